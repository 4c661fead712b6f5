# SPDX-License-Identifier: LGPL-2.1-or-later
# test_region: IOMem::Region without a daemon: sizes, backends, IO::Buffer maps, read-only buffers, io/send_io, seals.
require_relative "helper"

class TestRegion < IOMemTest::Case
  PAGE = IO::Buffer::PAGE_SIZE

  def test_new_size_close
    r = IOMem::Region.new(1024)
    assert_equal 1024, r.size
    assert_equal :memfd, r.backend
    assert_equal 0, r.id
    refute r.read_only?
    refute r.closed?
    r.close
    assert r.closed?
    r.close # twice is fine
    assert_raises(IOError) { r.size }
    assert_raises(IOError) { r.map }
    assert_raises(IOError) { r.io }
  end

  def test_backends
    %i[memfd shm file].each do |b|
      IOMem::Region.with(PAGE, backend: b) do |r|
        assert_equal b, r.backend
        buf = r.map
        buf.set_string("via #{b}", 0)
        assert_equal "via #{b}", r.map.get_string(0, 4 + b.size)
      end
    end
    assert_raises(ArgumentError) { IOMem::Region.new(PAGE, backend: :tape) }
  end

  def test_with_block_closes_and_returns_value
    kept = nil
    value = IOMem.with(PAGE) do |r|
      kept = r
      r.map.set_string("Hello, World!", 0)
      r.map.get_string(0, 13)
    end
    assert_equal "Hello, World!", value
    assert kept.closed?
    assert_instance_of IOMem::Region, IOMem.new(8).tap(&:close)
  end

  def test_size_errors
    # the limit and the remedy, not libiomem's "size above the limit"
    assert_errno(Errno::EFBIG, /- new region: size #{2 * PAGE} is above max_size #{PAGE}: pass a larger max_size:\z/) do
      IOMem::Region.new(2 * PAGE, max_size: PAGE)
    end
    big = /- new region: size #{1 << 40} is above the default max_size \(64 GiB\): pass a larger max_size:\z/
    assert_errno(Errno::EFBIG, big) { IOMem::Region.new(1 << 40) }
    assert_errno(Errno::EINVAL, /negative size/) { IOMem::Region.new(-1) }
    assert_raises(TypeError) { IOMem::Region.new("big") }
    # NUM2ULL wraps a negative Integer: max_size: -1 silently became 2**64 - 1, lifting the local resize cap
    assert_errno(Errno::EINVAL, /negative max_size/) { IOMem::Region.new(PAGE, max_size: -1) }
  end

  def test_map_whole_partial_offset
    IOMem::Region.with(4 * PAGE) do |r|
      whole = r.map
      assert_equal 4 * PAGE, whole.size
      assert whole.mapped?
      refute whole.readonly?
      part = r.map(1024)
      assert_equal 1024, part.size
      tail = r.map(nil, 2 * PAGE)
      assert_equal 2 * PAGE, tail.size
      whole.set_string("Middle", 2 * PAGE)
      assert_equal "Middle", tail.get_string(0, 6) # the same memory, no copy
      tail.set_string("End", 2 * PAGE - 3)
      assert_equal "End", whole.get_string(4 * PAGE - 3, 3)
    end
  end

  def test_map_errors
    IOMem::Region.with(PAGE) do |r|
      # offset not page-aligned: the message says so (it was libiomem's "invalid argument: name, flags, size, ...")
      unaligned = /- map: offset 100 is not a multiple of the page size \(#{PAGE}\)\z/
      assert_errno(Errno::EINVAL, unaligned) { r.map(16, 100) }
      assert_errno(Errno::ERANGE, /map: range past the end/) { r.map(2 * PAGE) }
      assert_errno(Errno::ERANGE, /map: range past the end/) { r.map(nil, 2 * PAGE) }
      assert_errno(Errno::EINVAL, /negative offset/) { r.map(1, -PAGE) }
      assert_errno(Errno::EINVAL, /map: zero length/) { r.map(nil, PAGE) }
    end
    # the seed guide's zero-size case
    IOMem::Region.with(0) { |r| assert_errno(Errno::EINVAL, /zero length/) { r.map } }
  end

  def test_read_only_map
    IOMem::Region.with(PAGE) do |r|
      r.map.set_string("ro", 0)
      ro = r.map(read_only: true)
      assert ro.readonly?
      assert_equal "ro", ro.get_string(0, 2)
      assert_raises(IO::Buffer::AccessError) { ro.set_string("x", 0) }
      assert_raises(IO::Buffer::AccessError) { ro.set_value(:U8, 0, 1) }
      assert_raises(IO::Buffer::AccessError) { ro.clear }
      assert_equal "ro", r.map.get_string(0, 2)
    end
  end

  def test_buffer_outlives_region_and_is_unmapped_by_gc
    GC.start
    maps = IOMemTest.map_count
    r = IOMem::Region.new(PAGE)
    buf = r.map
    buf.set_string("still here", 0)
    r.close
    assert_equal "still here", buf.get_string(0, 10)
    assert_equal maps + 1, IOMemTest.map_count
    buf.free
    assert_equal maps, IOMemTest.map_count
    100.times { IOMem::Region.with(PAGE) { |x| x.map } }
    GC.start
    assert_equal maps, IOMemTest.map_count
  end

  def test_io_is_a_dup_owned_once
    IOMem::Region.with(PAGE) do |r|
      io = r.io
      assert_kind_of IO, io
      assert_same io, r.to_io
      assert io.close_on_exec?
      r.map.set_string("through the fd", 0)
      assert_equal "through the fd", io.pread(14, 0)
      io.close # the region's own fd is untouched
      assert_equal "through the fd", r.map.get_string(0, 14)
      refute_same io, r.io
    end
    r = IOMem::Region.new(PAGE)
    io = r.io
    r.close
    assert io.closed?, "Region#close closes the IO it handed out"
  end

  def test_send_io_and_from_io
    a, b = UNIXSocket.pair
    IOMem::Region.with(2 * PAGE) do |r|
      r.map.set_string("Shared data from parent", 0)
      a.send_io(r.io)
      received = b.recv_io
      assert received.close_on_exec?
      IOMem::Region.from_io(received).then do |peer|
        assert_equal 2 * PAGE, peer.size
        assert_equal :memfd, peer.backend
        assert_equal "Shared data from parent", peer.map.get_string(0, 23)
        peer.map.set_string("Data from child proc", 1000)
        peer.close
      end
      received.close
      assert_equal "Data from child proc", r.map.get_string(1000, 20)
    end
  ensure
    a&.close
    b&.close
  end

  # dup and clone made a new object around no region (the typed data is not copied): a region that said
  # closed? true while the original was open, and a Client that was closed. They must refuse, as Marshal does.
  def test_dup_and_clone_refuse
    IOMem::Region.with(PAGE) do |r|
      assert_raises(TypeError) { r.dup }
      assert_raises(TypeError) { r.clone }
      assert_raises(TypeError) { Marshal.dump(r) }
      refute r.closed?
    end
    c = IOMem::Client.allocate
    assert_raises(TypeError) { c.dup }
    assert_raises(TypeError) { c.clone }
  end

  def test_from_io_rejects_non_memory
    r, w = IO.pipe
    # says what is wrong (it was libiomem's "invalid argument: name, flags, size, seals or file descriptor")
    assert_errno(Errno::EINVAL, /- from_io: not a memory file \(a memfd, shm object or regular file\)\z/) do
      IOMem::Region.from_io(r)
    end
    # a memory file opened write-only is one: the error says what is wrong with it instead
    IOMem::Region.with(PAGE) do |reg|
      File.open("/proc/self/fd/#{reg.io.fileno}", File::WRONLY) do |wo|
        assert_errno(Errno::EINVAL, /- from_io: a memory file opened write-only \(or O_PATH\): open it readable\z/) do
          IOMem::Region.from_io(wo)
        end
      end
    end
  ensure
    r&.close
    w&.close
  end

  def test_seals
    IOMem::Region.with(PAGE) do |r|
      assert_equal [], r.seals
      assert_equal %i[shrink grow], r.seal(:shrink, "grow")
      assert_equal %i[shrink grow], r.seals
      assert_errno(Errno::EPERM, /resize: forbidden by the region's seals/) { r.resize(2 * PAGE) }
      buf = r.map
      assert_errno(Errno::EBUSY, /seal: the region is mapped writable/) { r.seal(:write) }
      buf.free
      assert_equal %i[shrink grow write], r.seal(IOMem::SEAL_WRITE)
      ro = r.map # sealed against writes: read-only by default
      assert ro.readonly?
      assert_raises(IO::Buffer::AccessError) { ro.set_string("x") }
      assert_errno(Errno::EPERM, /map/) { r.map(read_only: false) }
      r.seal("seal")
      assert_errno(Errno::EPERM, /seal: forbidden/) { r.seal(:future_write) }
      assert_raises(ArgumentError) { r.seal(:glue) }
      # unknown bits: said here (it was libiomem's "invalid argument: name, flags, size, seals or file descriptor",
      # and the daemon's "malformed CREATE"); -1 is not every bit
      e = assert_raises(ArgumentError) { r.seal(1 << 20) }
      assert_equal "unknown seal bits 0x100000 (IOMem::SEAL_*: seal, shrink, grow, write, future_write)", e.message
      assert_errno(Errno::EINVAL, /seals: negative/) { r.seal(-1) }
    end
    IOMem::Region.with(PAGE, backend: :shm) do |r|
      assert_equal [], r.seals
      assert_errno(Errno::EOPNOTSUPP, /seal: not supported/) { r.seal(:shrink) }
    end
  end

  # Shrinking a local region under a buffer of its own map made that buffer's next access past the new end kill
  # the interpreter ([BUG] Bus Error). Region#resize now refuses (EBUSY) while this process maps those bytes, as
  # the Python binding refuses while a memoryview lives; growing, and shrinking past every mapping, still work.
  def test_resize_refused_while_a_buffer_maps_the_cut_bytes
    IOMem::Region.with(3 * PAGE) do |r|
      buf = r.map
      buf.set_string("x", 2 * PAGE)
      assert_errno(Errno::EBUSY, /resize: .*mapped/) { r.resize(PAGE) }
      assert_equal 3 * PAGE, r.refresh
      assert_equal "x", buf.get_string(2 * PAGE, 1) # the bytes are still there, no SIGBUS
      r.resize(4 * PAGE) # growing is fine
      r.resize(3 * PAGE) # as is shrinking past every mapping
      buf.free
      two = r.map(2 * PAGE)
      r.resize(PAGE + 1) # a partial last page is still inside the file: not past it
      assert_equal "\0", two.get_string(PAGE, 1)
      assert_errno(Errno::EBUSY, /resize: .*mapped/) { r.resize(PAGE) }
      two.free
      head = r.map(PAGE)
      r.resize(PAGE) # only the first page is mapped now
      assert_equal PAGE, r.size
      assert_equal "\0", head.get_string(0, 1)
      head.free
    end
  end

  def test_resize_and_refresh
    IOMem::Region.with(PAGE) do |r|
      r.resize(3 * PAGE)
      assert_equal 3 * PAGE, r.size
      assert_equal 3 * PAGE, r.map.size
      File.open("/proc/self/fd/#{r.io.fileno}", "r+") { |f| f.truncate(5 * PAGE) } # someone else grows it
      assert_equal 5 * PAGE, r.refresh
      assert_errno(Errno::EINVAL, /negative size/) { r.resize(-5) }
    end
  end

  def test_fork_child_maps_inherited_region
    IOMem::Region.with(PAGE) do |r|
      buf = r.map
      buf.set_string("Hello from parent!", 0)
      pid = fork do
        child = r.map
        exit!(1) unless child.get_string(0, 18) == "Hello from parent!"
        child.set_string("Hello from child!", 100)
        exit!(0)
      end
      _, st = Process.wait2(pid)
      assert st.success?
      assert_equal "Hello from child!", buf.get_string(100, 17)
    end
  end

  def test_no_fd_leak_10000_cycles
    GC.start
    before = IOMemTest.fd_count
    10_000.times do
      r = IOMem::Region.new(PAGE)
      r.io
      r.close
    end
    assert_equal before, IOMemTest.fd_count, "explicit close leaves nothing open"
    10_000.times { IOMem::Region.new(PAGE).io } # dropped, never closed: GC owns them
    GC.start
    assert_equal before, IOMemTest.fd_count, "GC closes what was dropped"
  end

  def test_strerror_and_constants
    assert_equal "no region with this name", IOMem.strerror(-Errno::ENOENT::Errno)
    assert_equal 0x2, IOMem::SEAL_SHRINK
  end
end
