# SPDX-License-Identifier: LGPL-2.1-or-later
# test_fiber: IOMem::Client under a Fiber::Scheduler (docs/ruby.md "Fiber scheduler"): the waits that can be long
# (open(wait:), next_event, stat, ping) yield to the other fibers of the thread instead of blocking it.
require_relative "helper"
require "timeout"

# A small Fiber::Scheduler, IO.select based, in the manner of Ruby's own test/fiber/scheduler.rb (no gem here):
# io_wait, kernel_sleep, block/unblock (Mutex, ConditionVariable), close (runs the fibers left).
class SelectScheduler
  def initialize
    @readable = {} # IO => Fiber
    @writable = {}
    @waiting = {}  # Fiber => monotonic deadline (sleep, io_wait's and block's timeouts)
    @blocked = {}  # Fiber => true
    @ready = []    # fibers unblocked (possibly from another thread)
    @lock = Thread::Mutex.new
    @urgent_r, @urgent_w = IO.pipe
  end

  def now = Process.clock_gettime(Process::CLOCK_MONOTONIC)

  def run
    while @readable.any? || @writable.any? || @waiting.any? || @blocked.any? || @ready.any?
      timeout = @waiting.values.min&.then { |d| [d - now, 0].max }
      r, w, = IO.select([*@readable.keys, @urgent_r], @writable.keys, [], timeout)
      if r&.delete(@urgent_r)
        @urgent_r.read_nonblock(64, exception: false)
      end
      r&.each { |io| resume(@readable[io]) }
      w&.each { |io| resume(@writable[io]) }
      t = now
      @waiting.select { |_, d| d <= t }.each_key { |f| resume(f) }
      ready = @lock.synchronize { @ready.slice!(0..) }
      ready.each { |f| resume(f) }
    end
  end

  def resume(fiber)
    fiber.resume if fiber&.alive?
  end

  def io_wait(io, events, timeout)
    fiber = Fiber.current
    @readable[io] = fiber if events & IO::READABLE != 0
    @writable[io] = fiber if events & IO::WRITABLE != 0
    @waiting[fiber] = now + timeout if timeout
    Fiber.yield
    events
  ensure
    @readable.delete(io)
    @writable.delete(io)
    @waiting.delete(fiber)
  end

  def kernel_sleep(duration = nil)
    fiber = Fiber.current
    @waiting[fiber] = now + duration if duration
    @blocked[fiber] = true unless duration
    Fiber.yield
    true
  ensure
    @waiting.delete(fiber)
    @blocked.delete(fiber)
  end

  def block(_blocker, timeout = nil)
    fiber = Fiber.current
    if timeout
      @waiting[fiber] = now + timeout
    else
      @blocked[fiber] = true
    end
    Fiber.yield
  ensure
    @waiting.delete(fiber)
    @blocked.delete(fiber)
  end

  def unblock(_blocker, fiber)
    @lock.synchronize { @ready << fiber }
    @urgent_w.write_nonblock(".", exception: false)
  end

  # Timeout.timeout under a scheduler: a timer fiber raises into the caller (as Ruby's test scheduler does)
  def timeout_after(duration, klass, message)
    caller = Fiber.current
    fiber do
      sleep(duration)
      caller.raise(klass, message) if caller&.alive?
    end
    begin
      yield duration
    ensure
      caller = nil
    end
  end

  def fiber(&block)
    f = Fiber.new(blocking: false, &block)
    f.resume
    f
  end

  def close
    run
  ensure
    @urgent_r.close
    @urgent_w.close
  end
end

class TestFiber < IOMemTest::TwoClientCase
  DAEMON = IOMemTest::Daemon.new
  Minitest.after_run { DAEMON.stop }

  class Guard < StandardError; end
  class Stop < StandardError; end

  def teardown
    Fiber.set_scheduler(nil)
    super
  end

  # Run the block under a fresh SelectScheduler, to the end of every fiber it scheduled. A guard thread raises
  # Guard into this thread if that has not happened in 30 s: the test then fails rather than hangs (it is no
  # timed assertion: with a yielding client it ends as soon as the daemon answers).
  def under_scheduler
    main = Thread.current
    guard = Thread.new do
      sleep 30
      main.raise(Guard, "the fibers did not finish: a client call blocked the thread")
    end
    Fiber.set_scheduler(SelectScheduler.new)
    yield
    Fiber.set_scheduler(nil) # runs the fibers to their end (Scheduler#close)
  ensure
    guard.kill
    guard.join
  end

  # One fiber runs the waiting block while a second fiber of the thread says it ran and then makes @name through
  # the other client. Return: the block's value; the order asserted (the second fiber ran before the wait ended).
  def wait_while_another_fiber_creates(name, size = 4096)
    order = []
    got = nil
    under_scheduler do
      Fiber.schedule do
        got = yield
        order << :wait_ended
      end
      Fiber.schedule do
        order << :other_fiber_ran
        @other.create(name, size).close
      end
    end
    assert_equal %i[other_fiber_ran wait_ended], order
    got
  end

  # (1) a fiber waits for a name; another fiber of the same thread runs meanwhile and makes it
  def test_open_wait_lets_other_fibers_run
    got = wait_while_another_fiber_creates("late", 8192) { @c.open("late", wait: true) { |r| [r.size, r.name] } }
    assert_equal [8192, "late"], got
  end

  def test_open_after_generation_lets_other_fibers_run
    @other.create("v", 4096).close
    g0 = @c.stat("v").generation
    got = nil
    under_scheduler do
      Fiber.schedule { @c.open("v", after_generation: g0, wait: true) { |r| got = r.generation } }
      Fiber.schedule do
        snap = IOMem::Region.new(4096, backend: :memfd)
        snap.seal(:shrink, :grow)
        @other.publish("v", snap)
        snap.close
      end
    end
    assert_operator got, :>, g0
  end

  # (2) next_event: the same shape
  def test_next_event_lets_other_fibers_run
    @c.watch("ev/")
    ev = wait_while_another_fiber_creates("ev/x") { @c.next_event }
    assert_equal [:created, "ev/x"], [ev.kind, ev.name]
  end

  def test_events_enumerator_under_a_scheduler
    @c.watch("en/")
    names = nil
    under_scheduler do
      Fiber.schedule { names = @c.events.first(2).map(&:name) }
      Fiber.schedule { %w[en/a en/b].each { |n| @other.create(n, 4096).close } }
    end
    assert_equal %w[en/a en/b], names
  end

  # (3) timeout: raises (or returns nil) as without a scheduler, and other fibers ran during the wait
  def test_timeouts_hold_under_a_scheduler
    ran = false
    err = ev = :unset
    flags = []
    @c.watch("none/")
    under_scheduler do
      Fiber.schedule do
        err = assert_raises(Errno::ETIMEDOUT) { @c.open("never", timeout: 0.3) }
        flags << ran
        ev = @c.next_event(timeout: 0.3)
        flags << ran
      end
      Fiber.schedule { ran = true }
    end
    assert_match(/open "never"/, err.message)
    assert_nil ev
    assert_equal [true, true], flags, "the other fiber ran while the first waited"
  end

  # stat and ping go through the scheduler too; a missing name raises as it does without
  def test_stat_and_ping_under_a_scheduler
    @other.create("s", 8192).close
    size = pinged = nil
    under_scheduler do
      Fiber.schedule do
        size = @c.stat("s").size
        pinged = @c.ping
        assert_errno(Errno::ENOENT, /stat "nope"/) { @c.stat("nope") }
        assert_errno(Errno::EINVAL, /open "a b": invalid region name \(1 to 255 bytes/) { @c.open("a b") }
      end
    end
    assert_equal 8192, size
    assert_same @c, pinged
  end

  # Stat#generation under a scheduler is the blocking stat's, not nil: `open(after_generation: stat.generation,
  # wait: true)` (docs/ruby.md) must wait for a newer version there too, not open the current one at once.
  def test_stat_generation_under_a_scheduler
    @other.create("sg", 4096).close
    want = @c.stat("sg").generation
    got = opened = nil
    under_scheduler do
      Fiber.schedule do
        got = @c.stat("sg").generation
        @c.open("sg", after_generation: got, timeout: 0.05) { |r| opened = r.generation }
      rescue Errno::ETIMEDOUT
        opened = :waited
      end
    end
    assert_kind_of Integer, want
    assert_equal want, got
    assert_equal :waited, opened
  end

  # ping yields: with the daemon stopped (SIGSTOP) a fiber's ping waits while another fiber runs and lets the
  # daemon go on. A blocking ping would block the thread: the second fiber never ran (the guard's 30 s end it).
  def test_ping_yields_while_the_daemon_is_stopped
    d = IOMemTest::Daemon.new
    c = IOMem::Client.new(socket: d.socket)
    order = []
    Process.kill(:STOP, d.pid)
    under_scheduler do
      Fiber.schedule do
        c.ping
        order << :pinged
      end
      Fiber.schedule do
        order << :other_fiber_ran
        Process.kill(:CONT, d.pid)
      end
    end
    assert_equal %i[other_fiber_ran pinged], order
  ensure
    Process.kill(:CONT, d.pid) if d
    c&.close
    d&.stop
  end

  # (4) a fiber raised into while it waits leaves the client usable; the late reply's region is closed, no fd leaks
  def test_a_waiting_fiber_raised_into_leaves_the_client_usable
    caught = nil
    after = nil
    under_scheduler do
      waiter = Fiber.schedule do
        @c.open("gone", wait: true)
      rescue Stop => e
        caught = e
      end
      Fiber.schedule do
        waiter.raise(Stop)
        @c.ping
        @other.create("gone", 4096).close # the daemon answers the abandoned OPEN now
        @c.ping                           # its reply is read and dropped, its region closed
        @c.open("gone") { |r| after = r.size }
      end
    end
    assert_instance_of Stop, caught
    assert_equal 4096, after
    @c.ping # and without the scheduler
  end

  # 64 waiting opens cancelled (each fiber raised into) leave nothing parked for good: a later open(wait: true) on
  # the client is served. Before, each stayed parked in the daemon until its name appeared (never here), they
  # filled the connection's 64 waiting OPENs (CONN_MAX_WAITS) and the next open(wait: true) raised EDQUOT. Now a
  # fiber's waiting OPEN is asked in slices (FIBER_WAIT_SLICE_MS), and one that finds the slots full waits for
  # one of the client's requests to end and asks again.
  def test_cancelled_waiting_opens_leave_no_slot_taken
    size = nil
    under_scheduler do
      waiters = Array.new(64) do |i|
        Fiber.schedule do
          @c.open("never/#{i}", wait: true)
        rescue Stop
          nil
        end
      end
      Fiber.schedule do
        waiters.each { |f| f.raise(Stop) }
        size = @c.open("slot", wait: true, &:size)
      end
      Fiber.schedule { @other.create("slot", 4096).close }
    end
    assert_equal 4096, size
  end

  # waits longer than a slice (FIBER_WAIT_SLICE_MS): the slices' ETIMEDOUT is not the caller's; timeout: still is
  def test_waits_longer_than_a_slice
    size = err = nil
    under_scheduler do
      Fiber.schedule { size = @c.open("long", wait: true, &:size) }
      Fiber.schedule { err = assert_raises(Errno::ETIMEDOUT) { @c.open("never-long", timeout: 1.5) } }
      Fiber.schedule do
        sleep 2 * IOMem::Client::FIBER_WAIT_SLICE_MS / 1000.0
        @other.create("long", 4096).close
      end
    end
    assert_equal 4096, size
    assert_match(/open "never-long"/, err.message)
  end

  # the scheduler's own timeout (Timeout.timeout -> timeout_after) ends a waiting open the same way
  def test_timeout_timeout_ends_a_waiting_open
    err = size = nil
    under_scheduler do
      Fiber.schedule do
        err = assert_raises(Timeout::Error) { Timeout.timeout(0.2) { @c.open("tt", wait: true) } }
        @other.create("tt", 4096).close
        @c.ping
        size = @c.open("tt", &:size)
      end
    end
    assert_instance_of Timeout::Error, err
    assert_equal 4096, size
  end

  # the late reply of an abandoned open, read by a blocking call once the scheduler is gone: its region is closed
  # then, not kept in libiomem's queue until the client closes
  def test_a_late_reply_read_by_a_blocking_call_is_closed
    GC.start
    fds = IOMemTest.fd_count
    under_scheduler do
      waiter = Fiber.schedule do
        @c.open("late2", wait: true)
      rescue Stop
        nil
      end
      Fiber.schedule { waiter.raise(Stop) }
    end
    @other.create("late2", 4096).close
    @c.ping # no scheduler: a blocking round trip, which reads the OPEN's late reply first
    GC.start
    assert_equal fds, IOMemTest.fd_count, "the abandoned OPEN's region is closed"
  end

  def test_a_fiber_raised_into_while_waiting_for_an_event
    @c.watch("rv/")
    caught = got = nil
    under_scheduler do
      waiter = Fiber.schedule do
        @c.next_event
      rescue Stop => e
        caught = e
      end
      Fiber.schedule do
        waiter.raise(Stop)
        @other.create("rv/a", 4096).close
        got = @c.next_event(timeout: 5)
      end
    end
    assert_instance_of Stop, caught
    assert_equal "rv/a", got.name # the event was not lost with the fiber
  end

  # several fibers waiting on one client at once: each gets its own answer, whoever reads the socket
  def test_fibers_share_one_client
    got = {}
    under_scheduler do
      %w[a b c].each do |n|
        Fiber.schedule { @c.open("share/#{n}", wait: true, read_only: true) { |r| got[n] = r.size } }
      end
      Fiber.schedule do
        3.times { @c.ping }
        got[:stat] = @c.stat("share").size rescue got[:stat] = :enoent
        { "c" => 3, "a" => 1, "b" => 2 }.each { |n, pages| @other.create("share/#{n}", pages * 4096).close }
      end
    end
    assert_equal({ "a" => 4096, "b" => 8192, "c" => 12_288, stat: :enoent }, got)
  end

  # The tests below run on a daemon of their own, whose count of parked waiting OPENs (iomemd_waiting_opens) tells
  # that their fibers wait (on DAEMON, waits of the tests before, which end when their clients close, would count).
  def with_own_daemon
    d = IOMemTest::Daemon.new
    c = IOMem::Client.new(socket: d.socket)
    o = IOMem::Client.new(socket: d.socket)
    yield c, o
  ensure
    c&.close
    o&.close
    d&.stop
  end

  def wait_for_waiting_opens(other, n)
    # no timed assertion: the threads' join and under_scheduler have the 30 s guard
    sleep 0.01 until other.metrics.find { |m| m.name == "iomemd_waiting_opens" }.value >= n
  end

  # Fibers of two threads, each thread with its own scheduler, wait on one client at once: each gets its answer.
  # Before, the fibers' waiting state was one per client: the second thread's fiber waited in its scheduler's
  # `block` for the first thread's reader, which then asked its *own* scheduler to unblock it (a FiberError
  # "fiber called across threads" in that scheduler, the other fiber never woken).
  def test_fibers_of_two_threads_share_one_client
    with_own_daemon { |c, o| two_threads_share_one_client(c, o) }
  end

  # A thread that runs the block in a fiber under the scheduler, to its end. Its exception is raised by join.
  def thread_under_scheduler(scheduler = SelectScheduler.new, &block)
    Thread.new do
      Thread.current.report_on_exception = false
      Fiber.set_scheduler(scheduler)
      Fiber.schedule(&block)
      Fiber.set_scheduler(nil)
    end
  end

  def two_threads_share_one_client(c, o)
    got = Queue.new
    threads = %w[t1 t2].map do |n|
      t = thread_under_scheduler { got << [n, c.open("thr/#{n}", wait: true, &:size)] }
      wait_for_waiting_opens(o, 1) if n == "t1" # t1's fiber reads the socket, then t2's waits
      t
    end
    wait_for_waiting_opens(o, 2)
    sleep 0.3 # not asserted: lets t2's fiber go from its submit to its wait
    o.create("thr/t1", 4096).close
    o.create("thr/t2", 8192).close
    hung = threads.reject { |t| t.join(30) }
    hung.each(&:kill)
    assert_empty hung, "a thread's fiber was never woken"
    assert_equal [["t1", 4096], ["t2", 8192]], Array.new(2) { got.pop }.sort
  end

  # The thread of a scheduler is killed while its fiber reads the client's socket (the fiber never resumed, its
  # ensure never run): fibers of another scheduler using the client later are not left waiting for it.
  def test_a_scheduler_thread_killed_while_its_fiber_reads
    with_own_daemon { |c, o| scheduler_thread_killed_while_its_fiber_reads(c, o) }
  end

  def scheduler_thread_killed_while_its_fiber_reads(c, o)
    dead = SelectScheduler.new
    t = thread_under_scheduler(dead) { c.open("killed", wait: true) }
    wait_for_waiting_opens(o, 1)
    t.kill
    t.join
    # what the dead scheduler held, its reader's IO (the dup of the socket) included, is left to the GC: close it
    # here so that the fd check does not depend on when the GC collects the suspended fiber
    dead.instance_variable_get(:@readable).each_key(&:close)
    %i[@urgent_r @urgent_w].each { |v| dead.instance_variable_get(v).close }
    size = nil
    under_scheduler do
      Fiber.schedule { size = c.open("after-kill", wait: true, &:size) }
      Fiber.schedule { o.create("after-kill", 4096).close }
    end
    assert_equal 4096, size
  end

  # a fiber closes the client while others wait on it: they raise ENOTCONN, the scheduler never selects a closed fd
  def test_close_while_fibers_wait
    c = IOMem::Client.new(socket: DAEMON.socket)
    errs = []
    under_scheduler do
      2.times do
        Fiber.schedule do
          c.open("never3", wait: true)
        rescue SystemCallError => e
          errs << e
        end
      end
      Fiber.schedule { c.close }
    end
    assert_equal [Errno::ENOTCONN] * 2, errs.map(&:class)
    assert_match(/open "never3": the IOMem::Client was closed/, errs.first.message)
  ensure
    c&.close
  end

  # the daemon restarts while a fiber waits: the OPEN it carried ends (ECONNRESET), the client connects again (a
  # blocking ping) and asks again; the name made on the new daemon is what the fiber gets
  def test_a_daemon_restart_while_a_fiber_waits
    d1 = IOMemTest::Daemon.new
    c = IOMem::Client.new(socket: d1.socket)
    d2 = size = nil
    under_scheduler do
      Fiber.schedule { size = c.open("after-restart", wait: true, &:size) }
      Fiber.schedule do
        Process.kill(:TERM, d1.pid)
        Process.wait(d1.pid)
        d2 = IOMemTest::Daemon.new(socket: d1.socket)
        d2.client { |o| o.create("after-restart", 8192).close }
      end
    end
    assert_equal 8192, size
  ensure
    c&.close
    d2 ? d2.stop : FileUtils.rm_rf(d1.dir)
  end

  # A blocking fiber (or no scheduler) takes the blocking path, as before: Stat#generation is there
  # (stat keeps its generation under a scheduler too now: the open below is what tells the paths apart, the fiber
  # that makes the name cannot run while the blocking fiber blocks the thread)
  def test_a_blocking_fiber_under_a_scheduler_blocks_as_before
    @other.create("b", 4096).close
    gen = waited = nil
    under_scheduler do
      Fiber.schedule do
        sleep 0.05 # yields to the scheduler: runs within the open's wait below only if that yields too
        @other.create("b2", 4096).close
      end
      Fiber.schedule do
        gen = Fiber.new(blocking: true) { @c.stat("b").generation }.resume
        waited = Fiber.new(blocking: true) do
          @c.open("b2", timeout: 0.3, &:size)
        rescue Errno::ETIMEDOUT
          :timed_out
        end.resume
      end
    end
    assert_kind_of Integer, gen
    assert_equal :timed_out, waited
  end
end
