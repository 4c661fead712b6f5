# SPDX-License-Identifier: LGPL-2.1-or-later
# test_client: IOMem::Client against the real iomemd: every call, every error's Errno class and words, read-only
# enforcement, waiting opens, the GVL released while a call blocks, no fd leak over 10,000 open/close cycles.
require_relative "helper"

class TestClient < IOMemTest::Case
  PAGE = IO::Buffer::PAGE_SIZE
  NAME_RULE = Regexp.escape("invalid region name (1 to 255 bytes of A-Z a-z 0-9 . _ - / : @ + = , not starting with / " \
                            "or . and without //)")

  DAEMON = IOMemTest::Daemon.new("--max-region-size", "1M")
  Minitest.after_run { DAEMON.stop }

  def setup
    super
    @c = IOMem::Client.new(socket: DAEMON.socket)
    @prefix = "t.#{name}."
  end

  def teardown
    @c.list(@prefix).each { |e| @c.delete(e.name) }
    @c.close
    super
  end

  # Thread @t (its native id in t[:tid]) waits in the kernel for a reply: poll(2) (7 on x86_64) or recvmsg(2) (47).
  # Bounded: false after ~20 s.
  def waits_for_daemon?(t)
    2000.times do
      return true if [7, 47].include?(File.read("/proc/self/task/#{t[:tid]}/syscall").split.first.to_i)

      sleep 0.01
    end
    false
  end

  def n(suffix)
    "#{@prefix}#{suffix}"
  end

  def test_connect_rules
    old = ENV["IOMEM_SOCKET"]
    ENV["IOMEM_SOCKET"] = DAEMON.socket # the default rule: $IOMEM_SOCKET first
    assert_equal DAEMON.socket, IOMem.socket_path
    IOMem::Client.connect { |c| c.ping }
    ENV["IOMEM_SOCKET"] = File.join(DAEMON.dir, "nothing")
    # says what to do, as Python's "(is iomemd running?)"
    hint = Regexp.escape("no daemon socket there (is iomemd running? socket: or $IOMEM_SOCKET names another)")
    assert_errno(Errno::ENOENT, /connect ".*nothing": #{hint}\z/) { IOMem::Client.new }
  ensure
    ENV["IOMEM_SOCKET"] = old
  end

  def test_connect_errors_and_close
    assert_errno(Errno::ENOENT, /no daemon socket there/) { IOMem::Client.new(socket: "/nonexistent/sock") }
    Dir.mktmpdir do |d| # a socket nobody listens on any more
      path = File.join(d, "s")
      UNIXServer.new(path).close
      assert_errno(Errno::ECONNREFUSED, /connect "#{path}": the daemon is not running/) do
        IOMem::Client.new(socket: path)
      end
    end
    c = IOMem::Client.connect(socket: DAEMON.socket)
    assert_kind_of Integer, c.fileno
    c.close
    assert c.closed?
    c.close
    assert_raises(IOError) { c.ping }
    assert_raises(IOError) { c.create("x", 1) }
    kept = nil
    assert_equal :done, IOMem::Client.connect(socket: DAEMON.socket) { |cc| kept = cc; :done }
    assert kept.closed?
  end

  def test_create_map_open_share_bytes
    r = @c.create(n("a"), PAGE)
    refute r.read_only?
    assert_operator r.id, :>, 0
    assert_equal PAGE, r.size
    r.map.set_string("Hello from create", 0)
    DAEMON.client do |other|
      other.open(n("a")) do |o|
        assert_equal r.id, o.id
        assert_equal "Hello from create", o.map.get_string(0, 17)
        o.map.set_string("reply", 100)
      end
    end
    assert_equal "reply", r.map.get_string(100, 5)
    r.close
    # block forms close the region at the end, also when the block raises, and return the block's value
    kept = []
    assert_equal :value, @c.open(n("a")) { |o| kept << o; :value }
    assert_raises(RuntimeError) { @c.create(nil, PAGE) { |o| kept << o; raise "boom" } }
    assert kept.all?(&:closed?)
  end

  def test_names_and_inspect_say_what_they_are
    # Region#name, Region#inspect, Client#socket, #timeout and #inspect were missing: a region printed as
    # #<IOMem::Region:0x...>, and a client had timeout= but no timeout.
    @c.create(n("a"), 100) do |r|
      assert_equal n("a"), r.name
      assert r.name.frozen?
      assert_match(/\A#<IOMem::Region name="#{Regexp.escape(n("a"))}" size=100 backend=memfd fd=\d+>\z/, r.inspect)
      ro = @c.open(n("a"), read_only: true)
      assert_equal n("a"), ro.name
      assert_match(/ size=100 backend=memfd read-only fd=\d+>\z/, ro.inspect)
      ro.close
      assert_equal %(#<IOMem::Region name="#{n("a")}" closed>), ro.inspect
      assert_equal n("a"), ro.name # kept after close, as Python's Region.name
    end
    @c.create(nil, 10) { |r| assert_nil r.name }
    IOMem::Region.with(10) { |r| assert_match(/\A#<IOMem::Region name=nil size=10 backend=memfd fd=\d+>\z/, r.inspect) }
    assert_equal DAEMON.socket, @c.socket
    assert_nil @c.timeout
    assert_equal %(#<IOMem::Client socket="#{DAEMON.socket}">), @c.inspect
    IOMem::Client.connect(socket: DAEMON.socket, timeout: 2.5) do |c|
      assert_equal 2.5, c.timeout
      c.timeout = 1
      assert_equal 1, c.timeout
      c.timeout = nil
      assert_nil c.timeout
      c.close
      assert_equal %(#<IOMem::Client socket="#{DAEMON.socket}" closed>), c.inspect
    end
    old = ENV["IOMEM_SOCKET"]
    ENV["IOMEM_SOCKET"] = DAEMON.socket
    IOMem::Client.connect { |c| assert_equal DAEMON.socket, c.socket } # the default resolved
  ensure
    ENV["IOMEM_SOCKET"] = old
  end

  def test_create_options_and_errors
    @c.create(n("x"), PAGE, exclusive: true, mode: 0o640, seals: %i[write], backend: :memfd) do |r|
      assert r.map.readonly?, "sealed against writes: read-only map"
    end
    st = @c.stat(n("x"))
    assert_equal 0o640, st.mode
    assert_includes st.seals, :write
    assert_equal :memfd, st.backend
    assert_errno(Errno::EEXIST, /create "#{n('x')}": name exists/) do
      @c.create(n("x"), PAGE, exclusive: true)
    end
    # a bad name: the rule, not the daemon's "malformed CREATE" (which names neither the argument nor the rule)
    assert_errno(Errno::EINVAL, /create "\/bad": #{NAME_RULE}\z/) { @c.create("/bad", PAGE) }
    # a mode past 0o777: said here (it was the daemon's "malformed CREATE")
    e = assert_raises(ArgumentError) { @c.create(n("m"), PAGE, mode: 0o1777) }
    assert_equal "mode 0o1777: a region's mode is 0 to 0o777 (permission bits only)", e.message
    assert_nil @c.list(n("m")).first
    assert_errno(Errno::EFBIG, /create "#{n('big')}": size above the (daemon.s )?limit/) { @c.create(n("big"), 2 << 20) }
    assert_errno(Errno::EINVAL, /name longer than 255 bytes/) { @c.create("a" * 2000, PAGE) }
    # every length past the limit says so (256 to 1024 bytes gave libiomem's generic "invalid argument"), and a
    # socket path is not a region name (past 1024 bytes it was "name longer than 255 bytes")
    [256, 1024, 1025, 4096].each do |len|
      assert_errno(Errno::EINVAL, /name longer than 255 bytes \(#{len} bytes\)/) { @c.create("a" * len, PAGE) }
      assert_errno(Errno::EINVAL, /name longer than 255 bytes \(#{len} bytes\)/) { @c.stat("a" * len) }
    end
    assert_raises(Errno::ENOENT) { @c.stat("a" * 255) } # the limit itself is a name
    [108, 1025].each do |len|
      assert_errno(Errno::ENAMETOOLONG, /socket path longer than 107 bytes \(#{len} bytes\)/) do
        IOMem::Client.new(socket: "/" * len)
      end
    end
    assert_raises(ArgumentError) { @c.create("nul\0", PAGE) }
    @c.create(n("shm"), PAGE, backend: :shm) { |r| assert_equal :shm, r.backend }
  end

  def test_anonymous_and_lease
    r = @c.create(nil, PAGE)
    assert_equal IOMem::REGION_ANONYMOUS, r.flags & IOMem::REGION_ANONYMOUS
    r.close
    DAEMON.client do |c2|
      c2.create(n("leased"), PAGE, lease: true).close
      assert_equal PAGE, @c.stat(n("leased")).size
    end
    gone = 500.times.any? do
      @c.stat(n("leased"))
      sleep 0.01
      false
    rescue Errno::ENOENT
      true
    end
    assert gone, "a leased name goes away with its connection"
  end

  def test_open_read_only_enforced
    @c.create(n("ro"), PAGE, mode: 0o644) { |r| r.map.set_string("read me", 0) }
    @c.open(n("ro"), read_only: true) do |r|
      assert r.read_only?
      assert_equal IOMem::REGION_RDONLY, r.flags & IOMem::REGION_RDONLY
      buf = r.map
      assert buf.readonly?
      assert_equal "read me", buf.get_string(0, 7)
      assert_raises(IO::Buffer::AccessError) { buf.set_string("no", 0) }
      assert_raises(IO::Buffer::AccessError) { buf.set_value(:U32, 0, 7) }
      assert_errno(Errno::EACCES, /map: permission denied/) { r.map(read_only: false) }
      assert_errno(Errno::EPERM, /seal/) { r.seal(:grow) } # the kernel refuses seals through a read-only fd
      io = r.io
      assert_raises(IOError) { io.write("x") } # the IO is read-only too
      assert_equal "read me", io.pread(7, 0)
    end
  end

  def test_open_errors_and_wait
    assert_errno(Errno::ENOENT, /open "#{n('none')}": no such region/) { @c.open(n("none")) }
    assert_errno(Errno::EINVAL, /open "": #{NAME_RULE}\z/) { @c.open("") }
    assert_errno(Errno::ETIMEDOUT, /open "#{n('late')}": no such region yet/) { @c.open(n("late"), timeout: 0.3) }
    # a waiting open returns once another client creates the name
    creator = Thread.new do
      DAEMON.client do |c2|
        sleep 0.3
        c2.create(n("late"), PAGE) { |r| r.map.set_string("late but here", 0) }
      end
    end
    r = @c.open(n("late"), wait: true) # returns once the name exists: maybe before the creator wrote
    creator.join
    assert_equal "late but here", r.map.get_string(0, 13)
    r.close
    @c.open(n("late"), wait: true, timeout: 5) { |r| assert_equal PAGE, r.size }
    # a NaN timeout cannot say how long to wait: it silently meant "do not wait" (ENOENT at once)
    assert_raises(RangeError) { @c.open(n("never"), timeout: Float::NAN) }
  end

  # While a call waits for the daemon, other Ruby threads run: the daemon is stopped (SIGSTOP) under a PING, and
  # only a thread that gets the GVL while the caller sits in poll() or recvmsg() can resume it. Holding the GVL would
  # hang here.
  def test_gvl_released_during_blocking_call
    d = IOMemTest::Daemon.new
    c = IOMem::Client.new(socket: d.socket)
    c.ping
    tid = nil
    Process.kill(:STOP, d.pid)
    caller = Thread.new do
      tid = Thread.current.native_thread_id
      c.ping
      :answered
    end
    seen_in_poll = false
    2000.times do # bounded: up to ~20 s
      # blocked in the kernel waiting for the reply: poll(2) (7 on x86_64), or recvmsg(2) (47), which libiomem uses
      # to wait for a reply when no timeout is set
      if tid && [7, 47].include?(File.read("/proc/self/task/#{tid}/syscall").split.first.to_i)
        seen_in_poll = true
        break
      end
      sleep 0.01
    end
    Process.kill(:CONT, d.pid)
    assert seen_in_poll, "this thread ran while the other one waited in poll(2)"
    assert_equal :answered, caller.value
    c.close
    d.stop
  end

  # A reply timeout (timeout:) is Errno::ETIMEDOUT and breaks the connection: later calls are Errno::ENOTCONN.
  def test_reply_timeout_breaks_the_client
    d = IOMemTest::Daemon.new
    c = IOMem::Client.new(socket: d.socket, timeout: 0.2)
    c.ping
    Process.kill(:STOP, d.pid)
    begin
      assert_errno(Errno::ETIMEDOUT, /ping: timed out/) { c.ping }
    ensure
      Process.kill(:CONT, d.pid)
    end
    assert_errno(Errno::ENOTCONN, /stat "x"/) { c.stat("x") }
    c.close
    IOMem::Client.connect(socket: d.socket, &:ping) # a new connection works
    d.stop
  end

  # Once the daemon went away and none came back there is no socket: fileno returned libiomem's -ENOTCONN (-107)
  # as if it were an fd. It must raise, and never give a negative number.
  def test_fileno_without_a_connection_raises
    d = IOMemTest::Daemon.new
    c = IOMem::Client.new(socket: d.socket, timeout: 0.3)
    assert_operator c.fileno, :>=, 0
    d.stop
    assert_errno(Errno::ENOTCONN, /went away/) { c.ping } # the reconnect window is capped by the timeout
    assert_errno(Errno::ENOTCONN, /fileno/) { c.fileno }
    c.close
    assert_raises(IOError) { c.fileno }
  end

  # Thread#raise while Client.new waits for the HELLO reply, the connect then succeeding: the exception comes out
  # of Client.new and the connection it made is closed at once (it used to be raised before the connection had an
  # owner, leaking its socket for good, which the fd count below caught every time).
  class Interrupted < StandardError; end

  def test_interrupt_during_connect_leaks_no_connection
    d = IOMemTest::Daemon.new
    before = IOMemTest.fd_count
    Process.kill(:STOP, d.pid) # connect() succeeds (the backlog takes it), the HELLO reply waits
    t = Thread.new do
      IOMem::Client.new(socket: d.socket)
      :connected
    rescue Interrupted
      :raised
    end
    # the thread is inside the connect once its socket exists and it sleeps without the GVL
    2000.times do
      break if IOMemTest.fd_count > before && t.status == "sleep"

      sleep 0.01
    end
    assert_operator IOMemTest.fd_count, :>, before, "the connecting thread has its socket (and eventfd)"
    t.raise(Interrupted)
    sleep 0.1 # the interrupt is pending: libiomem goes on waiting for the reply
    Process.kill(:CONT, d.pid)
    assert_equal :raised, t.value
    assert_equal before, IOMemTest.fd_count, "the connection made under the interrupt was closed"
    d.client(&:ping) # the daemon is fine
  ensure
    Process.kill(:CONT, d.pid) if d&.pid
    d&.stop
  end

  # A plain round trip to a daemon that does not answer, without timeout:, waited for ever: libiomem retried EINTR,
  # so Thread#raise (Timeout, Ctrl-C) and Thread#kill took effect only once the reply came. They must end the call
  # while the daemon is still stopped; the reply still to come (a CREATE's, with an fd) is dropped on arrival, never
  # read as the answer to a later request, and the client stays usable (its lease still held).
  def test_interrupt_ends_a_round_trip
    d = IOMemTest::Daemon.new
    c = IOMem::Client.new(socket: d.socket)
    c.create("intr.lease", PAGE, lease: true).close
    stopped = lambda do
      File.read("/proc/#{d.pid}/stat").split(")").last.split.first == "T"
    end
    Process.kill(:STOP, d.pid)
    guard = Thread.new { sleep 60; Process.kill(:CONT, d.pid) } # a hang guard only: the call then returns
    [[:raise, "intr"], [:kill, "intr2"]].each do |how, name|
      t = Thread.new do
        Thread.current[:tid] = Thread.current.native_thread_id
        Thread.current[:result] = :waiting
        c.create(name, PAGE)
        Thread.current[:result] = :created
      rescue Interrupted
        Thread.current[:result] = stopped.call ? :raised : :raised_after_the_reply
      end
      t.report_on_exception = false
      sleep 0.01 until t[:tid]
      assert waits_for_daemon?(t), "the thread waits for the daemon's reply"
      how == :raise ? t.raise(Interrupted) : t.kill
      t.join
      # Thread#kill leaves no result: the daemon must still be stopped when the thread is gone
      assert_equal(how == :raise ? :raised : :waiting, t[:result])
      assert stopped.call, "the call gave up only once the daemon answered (#{how})"
    end
    guard.kill
    guard.join
    Process.kill(:CONT, d.pid)
    # the CREATEs were sent before the interrupts: the daemon applies them (outcome unknown to the caller)
    assert_equal PAGE, c.stat("intr").size
    c.ping
    assert_equal %w[intr intr.lease intr2], c.list("intr").map(&:name).sort
    c.close
  ensure
    Process.kill(:CONT, d.pid) if d&.pid
    d&.stop
  end

  # The interrupt callback ran Ruby's pending interrupts with rb_thread_call_with_gvl() under rb_protect(), but
  # rb_thread_call_with_gvl() checks for interrupts again as it gives the GVL back, outside rb_protect(): one that
  # came in between (a trap's second signal) raised there, through libiomem's frames, leaving libiomem's reader
  # flag set and its pending entry on a dead stack: the next call waited for ever (or crashed). A child process
  # (interrupt_flood_child.rb) makes ROUNDS calls to a stopped daemon while we flood it with SIGUSR1, whose trap
  # raises; then the daemon runs again and its calls must work. The child writes a byte per round to a pipe (64
  # at a time): a hang is FLOOD_STALL seconds in which no rounds were reported (each ends at the next signal, sent
  # every 40 us at most), however long all the rounds take on a slow machine. Not a speed check.
  FLOOD_STALL = 20
  def test_interrupts_in_a_flood_never_unwind_libiomem
    d = IOMemTest::Daemon.new
    child = File.join(__dir__, "interrupt_flood_child.rb")
    progress, progress_w = IO.pipe
    IO.popen([IOMemTest.env("RUBY"), child, d.socket, "30000", "3"], "r+", 3 => progress_w) do |io|
      progress_w.close
      assert_equal "ready\n", io.gets
      Process.kill(:STOP, d.pid)
      io.puts "go"
      rounds = 0
      moved = look = Process.clock_gettime(Process::CLOCK_MONOTONIC) # when rounds were last seen to end
      line = nil
      loop do
        begin
          Process.kill(:USR1, io.pid)
        rescue Errno::ESRCH
          break
        end
        # Paced: signals sent back to back from the other CPU can keep the child in its signal handler for good
        # (each handler returns into the next signal: a livelock seen on a VM where a kill() costs less than the
        # child's handler, which made this test fail as a hang). A random gap of 0 to 40 us still lands signals
        # at every point of a call, a second one while the first is dealt with among them.
        gap = Process.clock_gettime(Process::CLOCK_MONOTONIC) + rand * 40e-6
        nil while Process.clock_gettime(Process::CLOCK_MONOTONIC) < gap
        if io.wait_readable(0)
          line = io.gets
          break
        end
        now = Process.clock_gettime(Process::CLOCK_MONOTONIC)
        next if now < look # the pipe read only every 50 ms: the signals' pacing stays as it was
        look = now + 0.05
        if (got = progress.read_nonblock(65_536, exception: false)).is_a?(String)
          rounds += got.bytesize
          moved = now
        elsif now > moved + FLOOD_STALL
          Process.kill(:KILL, io.pid)
          flunk "the child hung in its calls after #{rounds} rounds reported (none more for #{FLOOD_STALL} s): an " \
                "interrupt unwound libiomem's frames"
        end
      end
      assert_equal "rounds 30000\n", line, "the child's rounds (it died or hung otherwise)"
      # the rest of the rounds' bytes, written before that line
      while (got = progress.read_nonblock(65_536, exception: false)).is_a?(String)
        rounds += got.bytesize
      end
      assert_equal 30_000, rounds, "the rounds the child reported through the pipe"
      Process.kill(:CONT, d.pid)
      io.puts "cont"
      # its 5 calls to the running daemon, a byte after each: a hang is FLOOD_STALL s in which none returned
      calls = 0
      watch = [io, progress]
      until (ready = IO.select(watch, nil, nil, FLOOD_STALL)) && ready[0].include?(io)
        unless ready
          Process.kill(:KILL, io.pid)
          flunk "the child hung once the daemon ran again, after #{calls} calls (none returned for " \
                "#{FLOOD_STALL} s): an interrupt unwound libiomem's frames"
        end
        got = progress.read_nonblock(65_536, exception: false)
        watch = [io] if got.nil? # the end: the child closed the pipe after its last call
        calls += got.bytesize if got.is_a?(String)
      end
      assert_equal "ok\n", io.gets
      calls += progress.read.bytesize if watch.include?(progress) # the child closed the pipe before that line
      assert_equal 5, calls, "the calls the child reported through the pipe"
    end
    assert $?.success?, "child: #{$?.inspect}"
  ensure
    progress&.close
    progress_w&.close unless progress_w&.closed?
    Process.kill(:CONT, d.pid) if d&.pid
    d&.stop
  end

  # An interrupt Thread.handle_interrupt defers (:never) stays deferred: it wakes the waiting call, which runs no
  # interrupt inside libiomem any more, so the wait ends; a call that only reads (ping) asks again and returns once
  # the daemon answers, a call that changes something (create) cannot be asked again and raises Errno::EINTR
  # (outcome unknown). The interrupt is raised when the mask ends, not before.
  def test_deferred_interrupt_stays_deferred
    d = IOMemTest::Daemon.new
    c = IOMem::Client.new(socket: d.socket)
    Process.kill(:STOP, d.pid)
    guard = Thread.new { sleep 60; Process.kill(:CONT, d.pid) } # a hang guard only
    go = Queue.new
    t = Thread.new do
      Thread.current[:tid] = Thread.current.native_thread_id
      Thread.handle_interrupt(Interrupted => :never) do
        Thread.current[:ping] = c.ping
        go.pop # the daemon is stopped again
        Thread.current[:create] = begin
          c.create("deferred", PAGE)
        rescue Errno::EINTR => e
          e
        end
        :masked_block_ended
      end
    rescue Interrupted
      :raised_after_the_mask
    end
    t.report_on_exception = false
    sleep 0.01 until t[:tid]
    assert waits_for_daemon?(t), "ping waits for the daemon"
    t.raise(Interrupted)
    sleep 0.2 # not an assertion: lets the wake-up end the first ask (asked again, it waits as before)
    Process.kill(:CONT, d.pid) # ping returns
    sleep 0.01 until t.key?(:ping)
    Process.kill(:STOP, d.pid)
    go << true
    assert waits_for_daemon?(t), "create waits for the daemon"
    t.raise(Interrupted)
    assert_equal :raised_after_the_mask, t.value
    assert_same c, t[:ping]
    assert_instance_of Errno::EINTR, t[:create]
    assert_match(/create "deferred": .*outcome is unknown/, t[:create].message)
    guard.kill
    guard.join
    Process.kill(:CONT, d.pid)
    c.ping
    assert_equal PAGE, c.stat("deferred").size # the daemon applied it
    c.close
  ensure
    Process.kill(:CONT, d.pid) if d&.pid
    d&.stop
  end

  # A trap that raises (Ctrl-C's default one, SIGTERM's, a user's) must end a CREATE to a daemon that stopped
  # answering, as it did before the interrupt callback stopped running Ruby code: the trap-only check ended only
  # read-only calls, so Ctrl-C or SIGTERM left a process stuck in a create for as long as the daemon stayed
  # stopped. Now a trap still pending after a grace period (TRAP_GRACE_MS) ends the wait and runs. The guard
  # only detects a hang (it lets the daemon run again, and the create then returns instead of raising).
  def test_a_trap_that_raises_ends_a_create_to_a_stopped_daemon
    d = IOMemTest::Daemon.new
    c = IOMem::Client.new(socket: d.socket)
    tid = Thread.current.native_thread_id
    old = trap("USR2") { raise Interrupted }
    Process.kill(:STOP, d.pid)
    sender = Thread.new do
      2000.times do # bounded: up to ~20 s
        break if [7, 47].include?(File.read("/proc/self/task/#{tid}/syscall").split.first.to_i)

        sleep 0.01
      end
      Process.kill(:USR2, Process.pid)
    end
    resumed = false
    guard = Thread.new { sleep 60; resumed = true; Process.kill(:CONT, d.pid) } # a hang guard only
    assert_raises(Interrupted) { c.create("trapped", PAGE) }
    refute resumed, "the trap ran only once the daemon answered again: the create waited for it with Ctrl-C pending"
    sender.join
    guard.kill
    guard.join
    Process.kill(:CONT, d.pid)
    c.ping # the client stays usable
    c.close
  ensure
    trap("USR2", old || "DEFAULT")
    Process.kill(:CONT, d.pid) if d&.pid
    d&.stop
  end

  # A trap that returns ends the wait of a read-only call, which is asked again. open(wait:) and next_event wait
  # in slices of up to 200 ms, and the slice was asked again whole: with traps coming faster than a slice (here
  # every 20 ms) no slice ever ended and the call never came back to check its deadline: next_event(timeout:
  # 0.5) and open(timeout: 0.5) waited as long as the signals came. The watchdog only detects that hang (it stops
  # the signals after 30 s, and the call then returns).
  def test_a_stream_of_traps_does_not_stretch_a_wait_past_its_timeout
    old = trap("USR1") {}
    stop = false
    hung = false
    sender = Thread.new do
      until stop
        Process.kill(:USR1, Process.pid)
        sleep 0.02
      end
    end
    watchdog = Thread.new { sleep 30; hung = true; stop = true }
    assert_nil @c.next_event(timeout: 0.5)
    refute hung, "next_event(timeout: 0.5) waited as long as traps came"
    assert_errno(Errno::ETIMEDOUT, /open "#{n('never')}": no such region yet/) { @c.open(n("never"), timeout: 0.5) }
    refute hung, "open(timeout: 0.5) waited as long as traps came"
    assert_same @c, @c.ping
  ensure
    stop = true
    sender&.join
    watchdog&.kill
    watchdog&.join
    trap("USR1", old || "DEFAULT")
  end

  # A signal whose trap returns must not fail a call that cannot be asked again: Ruby 3.1 traps SIGCHLD itself,
  # so a child's exit while a CREATE waits (the daemon stopped) ended its wait and raised Errno::EINTR. It waits
  # on (the trap runs when the call returns) and gets its region.
  def test_a_childs_exit_does_not_end_a_create
    d = IOMemTest::Daemon.new
    c = IOMem::Client.new(socket: d.socket)
    Process.kill(:STOP, d.pid)
    pid = fork { sleep 0.3; exit!(0) } # not a timed assertion: the SIGCHLD should come while CREATE waits
    resumer = Thread.new do
      Process.wait(pid)
      sleep 0.2
      Process.kill(:CONT, d.pid)
    end
    c.create("chld", PAGE) { |r| assert_equal PAGE, r.size }
    resumer.join
    c.close
  ensure
    Process.kill(:CONT, d.pid) if d&.pid
    d&.stop
  end

  # An interrupt that comes too late to end a call (its reply is already in) was raised by
  # rb_thread_call_without_gvl() as it returned, before the extension saw the result: the fd of the CREATE's or
  # OPEN's region stayed open in an unreachable Region until a GC. Thread.handle_interrupt(:on_blocking) makes
  # that window deterministic: the Thread#raise is queued before the call and deferred until a blocking point, the
  # call runs to its end (no signal interrupts its wait: the raise came before it) and the interrupt is raised as
  # the call returns. The region must be closed by then (no GC here), and the client stay in step.
  def test_interrupt_after_the_reply_closes_the_region
    @c.create(n("opened"), PAGE).close
    [[:create, n("late")], [:open, n("opened")]].each do |how, name|
      before = IOMemTest.fd_count
      GC.disable # a leak would otherwise be hidden by a collection closing the dropped Region
      begin
        e = assert_raises(Interrupted) do
          Thread.handle_interrupt(Interrupted => :on_blocking) do
            Thread.current.raise(Interrupted) # pending: raised at the next blocking point, no earlier
            how == :create ? @c.create(name, PAGE) : @c.open(name)
          end
        end
        assert_instance_of Interrupted, e
        assert_equal before, IOMemTest.fd_count, "#{how}: the region of the late interrupt is closed at once"
      ensure
        GC.enable
      end
      @c.ping # in step
    end
    @c.create(n("after"), PAGE) { |r| assert_equal PAGE, r.size } # usable
  end

  def test_open_wait_is_interruptible
    t = Thread.new { @c.open(n("never"), wait: true) }
    t.report_on_exception = false
    sleep 0.05 until t.status == "sleep" || !t.alive?
    t.raise(Interrupt)
    assert_raises(Interrupt) { t.join }
    @c.ping # the connection is still in step
  end

  def test_stat_list_delete
    @c.create(n("s1"), PAGE, mode: 0o600).close
    @c.create(n("s2"), 2 * PAGE).close
    st = @c.stat(n("s1"))
    assert_instance_of IOMem::Stat, st
    assert_equal PAGE, st.size
    assert_equal Process.uid, st.uid
    assert_equal 0o600, st.mode
    assert_kind_of Time, st.ctime
    assert_in_delta Time.now.to_f, st.ctime.to_f, 3600
    assert_operator st.id, :>, 0
    assert_equal [n("s1"), n("s2")], @c.list(@prefix).map(&:name).sort
    e = @c.list(n("s2")).first
    assert_instance_of IOMem::Entry, e
    assert_equal 2 * PAGE, e.size
    seen = []
    assert_same @c, @c.list(@prefix) { |x| seen << x.name }
    assert_equal 2, seen.size
    assert_equal [], @c.list("#{@prefix}zzz")
    @c.delete(n("s1"))
    assert_errno(Errno::ENOENT, /stat "#{n('s1')}": no such region/) { @c.stat(n("s1")) }
    assert_errno(Errno::ENOENT, /delete "#{n('s1')}": no such region/) { @c.delete(n("s1")) }
    assert_errno(Errno::EINVAL, /stat "a\/\/b": #{NAME_RULE}\z/) { @c.stat("a//b") }
    %w[delete chmod resize].each do |call|
      args = call == "delete" ? [] : [0o600]
      assert_errno(Errno::EINVAL, /#{call} "\.x": #{NAME_RULE}\z/) { @c.public_send(call, ".x", *args) }
    end
  end

  def test_resize
    @c.create(n("rs"), PAGE, resizable: true) do |r|
      @c.resize(n("rs"), 3 * PAGE)
      assert_equal 3 * PAGE, @c.stat(n("rs")).size
      assert_equal 3 * PAGE, r.refresh
      @c.resize(n("rs"), PAGE)
      assert_equal PAGE, r.refresh
    end
    @c.create(n("fixed"), 2 * PAGE).close
    assert_errno(Errno::EPERM, /resize "#{n('fixed')}": region is not resizable/) { @c.resize(n("fixed"), PAGE) }
    assert_errno(Errno::EFBIG, /resize "#{n('fixed')}": size above the (daemon.s )?limit/) { @c.resize(n("fixed"), 4 << 20) }
    assert_errno(Errno::ENOENT, /resize "#{n('nope')}"/) { @c.resize(n("nope"), PAGE) }
    assert_errno(Errno::EINVAL, /negative size/) { @c.resize(n("fixed"), -1) }
  end

  # Client#resize shrinking a name under a buffer of this process made that buffer's next access past the new end
  # kill the interpreter with SIGBUS. Now Errno::EBUSY, nothing resized (Region#resize's rule).
  def test_resize_refuses_to_shrink_under_this_process_buffers
    @c.create(n("shr"), 4 * PAGE, resizable: true) do |r|
      buf = r.map
      ro = @c.open(n("shr"), read_only: true) { |o| o.map(2 * PAGE) } # a read-only buffer of 2 pages
      busy = /resize "#{Regexp.escape(n('shr'))}": bytes past the new size are mapped in this process/
      assert_errno(Errno::EBUSY, busy) { @c.resize(n("shr"), PAGE) }
      assert_equal 4 * PAGE, @c.stat(n("shr")).size
      buf.set_value(:U8, 4 * PAGE - 1, 1) # still backed
      @c.resize(n("shr"), 8 * PAGE) # growing cuts nothing
      @c.resize(n("shr"), 4 * PAGE) # down to what the buffers map
      buf.free
      assert_errno(Errno::EBUSY, busy) { @c.resize(n("shr"), PAGE) } # the read-only buffer maps 2 pages
      @c.resize(n("shr"), 2 * PAGE)
      ro.free
      @c.resize(n("shr"), PAGE)
      assert_equal PAGE, @c.stat(n("shr")).size
    end
    # another version under the name: a buffer of the old one is no reason to refuse
    @c.create(n("old"), 4 * PAGE, resizable: true) do |old|
      buf = old.map
      @c.delete(n("old"))
      @c.create(n("old"), 4 * PAGE, resizable: true).close
      @c.resize(n("old"), PAGE)
      assert_equal PAGE, @c.stat(n("old")).size
      buf.set_value(:U8, 4 * PAGE - 1, 2) # the old file is untouched
      buf.free
    end
  end

  def test_seal
    @c.create(n("sl"), PAGE) do |r|
      before = @c.stat(n("sl")).seals
      assert_equal (before | %i[grow]).sort, @c.seal(n("sl"), :grow).sort
      buf = r.map
      assert_errno(Errno::EBUSY, /seal "#{n('sl')}": a writable mapping exists/) { @c.seal(n("sl"), :write) }
      buf.free
      assert_includes @c.seal(n("sl"), "write", IOMem::SEAL_SEAL), :write
      assert_errno(Errno::EPERM, /seal "#{n('sl')}": cannot seal/) { @c.seal(n("sl"), :future_write) }
    end
    @c.create(n("shm"), PAGE, backend: :shm).close
    assert_errno(Errno::EOPNOTSUPP, /seal "#{n('shm')}": only memfd can be sealed/) { @c.seal(n("shm"), :shrink) }
    assert_errno(Errno::ENOENT, /seal "#{n('nope')}"/) { @c.seal(n("nope"), :shrink) }
    assert_raises(ArgumentError) { @c.seal(n("shm"), :everything) }
    assert_raises(ArgumentError) { @c.create(n("bits"), PAGE, seals: IOMem::SEAL_GROW | (1 << 20)) }
  end

  def test_chmod_chown
    @c.create(n("cm"), PAGE).close
    @c.chmod(n("cm"), 0o664)
    assert_equal 0o664, @c.stat(n("cm")).mode
    # past 0o777 (setuid, setgid, sticky, or beyond): ArgumentError naming the mode (was "malformed CHMOD"); 0 is
    # a mode for chmod (no access)
    [0o1000, 0o2644, 0o4755, 2**70].each do |bad|
      e = assert_raises(ArgumentError) { @c.chmod(n("cm"), bad) }
      assert_equal "mode 0o#{bad.to_s(8)}: a region's mode is 0 to 0o777 (permission bits only)", e.message
      e = assert_raises(ArgumentError) { @c.create(n("cm2"), PAGE, mode: bad) }
      assert_match(/\Amode 0o#{bad.to_s(8)}: /, e.message)
    end
    assert_errno(Errno::EINVAL, /chmod: negative mode/) { @c.chmod(n("cm"), -1) }
    @c.chmod(n("cm"), 0)
    assert_equal 0, @c.stat(n("cm")).mode
    @c.chmod(n("cm"), 0o664)
    assert_equal 0o664, @c.stat(n("cm")).mode
    assert_errno(Errno::ENOENT, /chmod "#{n('nope')}"/) { @c.chmod(n("nope"), 0o600) }
    # NUM2UINT wraps a negative Integer: uid -2 became 4294967294 (and -1 IOMEM_ID_UNCHANGED), for root a real chown
    assert_errno(Errno::EINVAL, /chown: negative uid/) { @c.chown(n("cm"), -2, nil) }
    assert_errno(Errno::EINVAL, /chown: negative gid/) { @c.chown(n("cm"), nil, -1) }
    assert_equal [Process.uid, Process.gid], [@c.stat(n("cm")).uid, @c.stat(n("cm")).gid]
    skip "chown to another owner needs root" unless IOMemTest.root?
    @c.chown(n("cm"), 1500, nil)
    st = @c.stat(n("cm"))
    assert_equal [1500, 0], [st.uid, st.gid]
    @c.chown(n("cm"), nil, 1600)
    assert_equal 1600, @c.stat(n("cm")).gid
    assert_errno(Errno::ENOENT, /chown "#{n('nope')}"/) { @c.chown(n("nope"), 1, 1) }
  end

  def test_register
    IOMem::Region.with(PAGE) do |mine|
      mine.map.set_string("registered bytes", 0)
      assert_errno(Errno::EPERM, /register "#{n('rg')}": the memfd must be sealed/) { @c.register(n("rg"), mine) }
      mine.seal(:shrink, :grow)
      e = assert_raises(ArgumentError) { @c.register(n("rg"), mine, mode: 0o1644) }
      assert_equal "mode 0o1644: a region's mode is 0 to 0o777 (permission bits only)", e.message
      id = @c.register(n("rg"), mine, mode: 0o644)
      assert_operator id, :>, 0
      assert_equal id, @c.stat(n("rg")).id
      assert_equal 0o644, @c.stat(n("rg")).mode
      DAEMON.client { |o| o.open(n("rg"), read_only: true) { |r| assert_equal "registered bytes", r.map.get_string(0, 16) } }
      assert_errno(Errno::EEXIST, /register "#{n('rg')}": name exists/) do
        @c.register(n("rg"), mine)
      end
      refute mine.closed?, "the region stays the caller's"
      DAEMON.client do |c2|
        c2.register(n("rg.lease"), mine, lease: true)
        assert_equal PAGE, @c.stat(n("rg.lease")).size
      end
    end
    IOMem::Region.with(PAGE, backend: :shm) do |shm|
      assert_errno(Errno::EINVAL, /register "#{n('shm')}": (malformed [A-Z]+|not a memfd)/) { @c.register(n("shm"), shm) }
    end
    closed = IOMem::Region.new(PAGE).tap(&:close)
    assert_raises(IOError) { @c.register(n("c"), closed) }
  end

  # A daemon that never answers HELLO (stopped, hung): timeout: bounds Client.new too (it hung for ever).
  def test_connect_timeout_stopped_daemon
    path = File.join(DAEMON.dir, "mute.sock")
    mute = UNIXServer.new(path) # never accepted
    assert_raises(Errno::ETIMEDOUT) { IOMem::Client.new(socket: path, timeout: 0.2) }
  ensure
    mute&.close
    File.unlink(path) if path && File.exist?(path)
  end

  def test_ping_status_quota_timeout
    assert_same @c, @c.ping
    st = @c.status
    assert_instance_of IOMem::Status, st
    assert_operator st.connections, :>=, 1
    assert_match(/\A\d+\.\d+/, st.server_version)
    assert_includes %i[auto memfd shm file], st.backend
    q = @c.quota
    assert_instance_of IOMem::Quota, q
    assert_equal Process.uid, q.uid
    assert_equal 1 << 20, q.max_region_size
    @c.timeout = 30
    @c.ping
    @c.timeout = nil
    # NaN or a timeout past INT_MAX ms cannot become an int (undefined behaviour; it silently meant "forever")
    [Float::NAN, 1e10, Float::INFINITY].each do |t|
      assert_raises(RangeError) { @c.timeout = t }
      assert_raises(RangeError) { IOMem::Client.new(socket: DAEMON.socket, timeout: t) }
    end
    @c.ping
  end

  # After fork the child shares the parent's socket: its requests and the parent's would take each other's
  # replies (or the child waited for ever for a reader the parent had at the fork). A call in the child must
  # raise, as in the Python binding; close there closes only the child's copy (the parent's client goes on).
  def test_forked_child_must_connect_again
    pid = fork do
      code = begin
        @c.ping
        1
      rescue RuntimeError => e
        e.message.include?("fork") ? 0 : 2
      rescue Exception # rubocop:disable Lint/RescueException
        3
      end
      begin
        @c.fileno
        code = 4 if code.zero?
      rescue RuntimeError
      end
      @c.close
      code = 5 if code.zero? && !@c.closed?
      exit!(code)
    end
    _, status = Process.wait2(pid)
    assert_equal 0, status.exitstatus, "1: the child's ping went over the parent's socket; 4: fileno; 5: close"
    assert_same @c, @c.ping # the parent's connection is untouched
  end

  # register and publish hand the daemon a private copy of the region's fd; an exception from the call (here a
  # closed client) left that copy open until the garbage collector came by
  def test_register_and_publish_close_their_copy_on_error
    r = IOMem::Region.new(PAGE, backend: :memfd)
    r.seal(:shrink, :grow)
    c = IOMem::Client.new(socket: DAEMON.socket)
    c.close
    GC.disable # a leak must not be hidden by a collection in between
    before = IOMemTest.fd_count
    assert_raises(IOError) { c.register(n("reg"), r) }
    assert_raises(IOError) { c.publish(n("pub"), r) }
    assert_equal before, IOMemTest.fd_count, "the copies of the fd are closed at once"
  ensure
    GC.enable
    r&.close
  end

  def test_threads_share_one_client
    @c.create(n("th"), PAGE).close
    threads = 4.times.map { Thread.new { 200.times { @c.stat(n("th")) } } }
    threads.each(&:join)
    @c.ping
  end

  def test_no_fd_leak_10000_open_close_cycles
    @c.create(n("cyc"), PAGE) { |r| r.map.set_string("cycle", 0) }
    GC.start
    before = IOMemTest.fd_count
    10_000.times do |i|
      r = @c.open(n("cyc"), read_only: i.odd?)
      r.io if (i % 10).zero?
      r.close
    end
    assert_equal before, IOMemTest.fd_count, "10,000 open/close cycles"
    1_000.times { @c.open(n("cyc")).map } # dropped: GC closes fds and unmaps
    GC.start
    assert_equal before, IOMemTest.fd_count, "dropped regions are closed by GC"
  end
end
