# SPDX-License-Identifier: LGPL-2.1-or-later
# helper: the Ruby tests' common ground: the real iomemd on a temporary socket, and an fd-leak check around every test.
Warning[:experimental] = false # IO::Buffer warns once per process on Ruby 3.1
require "minitest/autorun"
require "fileutils"
require "socket"
require "tmpdir"
require "iomem"

module IOMemTest
  def self.env(name)
    ENV.fetch(name) { abort "#{name} is not set: run the test through ctest" }
  end

  # One iomemd on its own socket in its own temporary directory; setpriv --pdeathsig kills it if the test dies.
  class Daemon
    attr_reader :socket, :pid, :dir

    # socket: a path to listen on again (a daemon started after another one on it ended), else a new directory's
    def initialize(*args, socket: nil)
      @dir = socket ? File.dirname(socket) : Dir.mktmpdir("iomem-rb.")
      @socket = socket || File.join(@dir, "sock")
      @pid = Process.spawn("setpriv", "--pdeathsig", "KILL", IOMemTest.env("IOMEMD"), "--socket", @socket,
                           "--log-level", "warning", "--tmpdir", @dir, *args, in: File::NULL)
      1000.times do
        begin
          UNIXSocket.new(@socket).close
          return
        rescue Errno::ENOENT, Errno::ECONNREFUSED
          raise "iomemd exited at startup" if Process.wait(@pid, Process::WNOHANG)

          sleep 0.01
        end
      end
      raise "iomemd did not start listening on #{@socket}"
    end

    def client(**kw, &block)
      IOMem::Client.connect(socket: @socket, **kw, &block)
    end

    # Stop with SIGTERM; the daemon must exit cleanly.
    def stop
      return unless @pid

      Process.kill(:TERM, @pid)
      _, status = Process.wait2(@pid)
      @pid = nil
      FileUtils.rm_rf(@dir)
      raise "iomemd did not exit cleanly: #{status.inspect}" unless status.success?
    end
  end

  # Copies of what a child running as another uid loads (iomem.rb, the extension, libiomem, and @files) in
  # DIR/stage: the source and build trees may be under /root (0700). Return: the stage, for RUBYLIB and
  # LD_LIBRARY_PATH.
  def self.stage_for_other_uid(dir, *files)
    stage = File.join(dir, "stage")
    Dir.mkdir(stage)
    File.chmod(0o755, stage)
    ext = $LOADED_FEATURES.find { |f| File.basename(f) == "iomem_ext.so" }
    lib = File.foreach("/proc/self/maps").map { |l| l.split.last }.find { |f| f&.include?("/libiomem.so") }
    [*files, ext, File.join(File.dirname(ext), "iomem.rb")].each { |f| FileUtils.cp(f, stage) }
    FileUtils.cp(lib, File.join(stage, "libiomem.so.0"))
    stage
  end

  def self.fd_count
    Dir.children("/proc/self/fd").size
  end

  # mappings of memory objects (memfd:, /dev/shm, the file backend's unlinked files) in this process
  def self.map_count
    File.readlines("/proc/self/maps").count { |l| l =~ %r{memfd:|/dev/shm/|iomem-rb\.|\(deleted\)} }
  end

  def self.root?
    Process.uid.zero?
  end

  # Every test checks it leaked no fd: the count before and after must match (objects the test dropped
  # without closing are collected first: a leak is an fd that nothing will ever close).
  class Case < Minitest::Test
    def setup
      GC.start
      @fds_before = IOMemTest.fd_count
    end

    def teardown
      GC.start
      assert_equal @fds_before, IOMemTest.fd_count, "#{name} leaked fds: #{Dir.children('/proc/self/fd').sort_by(&:to_i).map { |f| "#{f}->#{File.readlink("/proc/self/fd/#{f}") rescue '?'}" }.join(' ')}"
    end

    # assert_errno(Errno::ENOENT, /pattern/) { ... }: the exact class, and the daemon's words in the message
    def assert_errno(klass, pattern)
      e = assert_raises(SystemCallError) { yield }
      assert_instance_of klass, e, "wanted #{klass}, got #{e.class}: #{e.message}"
      assert_match pattern, e.message
      e
    end
  end

  # A case with two clients of its class's DAEMON, @c and @other; every name is deleted after each test.
  class TwoClientCase < Case
    def setup
      super
      @c = IOMem::Client.new(socket: self.class::DAEMON.socket)
      @other = IOMem::Client.new(socket: self.class::DAEMON.socket)
    end

    def teardown
      @c.list.each { |e| @c.delete(e.name) }
      @c.close
      @other.close
      super
    end
  end
end
