# SPDX-License-Identifier: LGPL-2.1-or-later
# access_child: run by test_access.rb as uid 1501 (gid 1601) against a daemon where root made acc.private (0600),
# acc.shared (0644) and acc.group (0660, group 1601). Usage: access_child.rb SOCKET
Warning[:experimental] = false
require "minitest/autorun"
require "iomem"

class AccessChild < Minitest::Test
  PAGE = IO::Buffer::PAGE_SIZE
  SOCKET = ARGV.fetch(0)

  def setup
    @c = IOMem::Client.new(socket: SOCKET)
  end

  def teardown
    @c.close
  end

  def assert_eacces(what, name)
    e = assert_raises(Errno::EACCES) { yield }
    assert_match(/#{what} "#{name}": (permission denied|only the owner may|only root may)/, e.message)
  end

  def test_refused_calls
    assert_equal 1501, Process.uid
    assert_eacces("open", "acc.private") { @c.open("acc.private", read_only: true) }
    assert_eacces("open", "acc.private") { @c.open("acc.private") }
    assert_eacces("stat", "acc.private") { @c.stat("acc.private") }
    assert_eacces("open", "acc.shared") { @c.open("acc.shared") } # read-write needs write
    assert_eacces("delete", "acc.shared") { @c.delete("acc.shared") }
    assert_eacces("resize", "acc.shared") { @c.resize("acc.shared", 2 * PAGE) }
    assert_eacces("seal", "acc.shared") { @c.seal("acc.shared", :grow) }
    assert_eacces("chmod", "acc.shared") { @c.chmod("acc.shared", 0o666) }
    assert_eacces("chown", "acc.shared") { @c.chown("acc.shared", 1501, nil) }
  end

  def test_read_only_across_owners
    @c.open("acc.shared", read_only: true) do |r|
      assert r.read_only?
      buf = r.map
      assert buf.readonly?
      assert_equal "for everyone", buf.get_string(0, 12)
      assert_raises(IO::Buffer::AccessError) { buf.set_string("mine now", 0) }
      e = assert_raises(Errno::EACCES) { r.map(read_only: false) }
      assert_match(/map/, e.message)
      assert_raises(IOError) { r.io.write("x") }
    end
    @c.open("acc.group") { |r| r.map.set_string("group write", 0) } # 0660 and our gid
  end

  def test_quota
    @c.create("acc.by1501.a", PAGE, mode: 0o644) { |r| r.map.set_string("from uid 1501", 0) }
    @c.create("acc.by1501.b", PAGE).close
    @c.create("acc.by1501.c", PAGE).close
    e = assert_raises(Errno::EDQUOT) { @c.create("acc.by1501.d", PAGE) }
    assert_match(/create "acc.by1501.d": .*quota is reached/, e.message)
    assert_equal [3, 3], [@c.quota.regions, @c.quota.max_regions]
  end
end
