# SPDX-License-Identifier: LGPL-2.1-or-later
# test_access: as another uid (setpriv): EACCES for every refused call, read-only enforcement across owners,
# EDQUOT at the per-uid quota. Needs root to switch uids; exits 77 (skipped) otherwise.
unless Process.uid.zero? && system("command -v setpriv >/dev/null")
  puts "needs root and setpriv: skipped"
  exit 77
end
require_relative "helper"

class TestAccess < IOMemTest::Case
  PAGE = IO::Buffer::PAGE_SIZE
  CHILD = File.join(__dir__, "access_child.rb")

  def test_other_uid
    d = IOMemTest::Daemon.new("--quota-regions", "3")
    File.chmod(0o755, d.dir)
    stage = IOMemTest.stage_for_other_uid(d.dir, CHILD)
    d.client do |c|
      c.create("acc.private", PAGE, mode: 0o600) { |r| r.map.set_string("secret", 0) }
      c.create("acc.shared", PAGE, mode: 0o644) { |r| r.map.set_string("for everyone", 0) }
      c.create("acc.group", PAGE, mode: 0o660).close
      c.chown("acc.group", nil, 1601)
      # the child runs its own minitest suite as uid 1501, gid 1601
      out = IO.popen({ "RUBYLIB" => stage, "LD_LIBRARY_PATH" => stage },
                     ["setpriv", "--reuid", "1501", "--regid", "1601", "--clear-groups",
                      RbConfig.ruby, File.join(stage, File.basename(CHILD)), d.socket],
                     err: %i[child out], &:read)
      assert $?.success?, "access_child.rb as uid 1501 failed:\n#{out}"
      assert_match(/0 failures, 0 errors, 0 skips/, out)
      # what the child made is owned by it; root sees it, and its quota stopped it at 3
      assert_equal [1501, 1501], %w[acc.by1501.a acc.by1501.b].map { |n| c.stat(n).uid }
      assert_equal "from uid 1501", c.open("acc.by1501.a") { |r| r.map.get_string(0, 13) }
      assert_equal "group write", c.open("acc.group") { |r| r.map.get_string(0, 11) }
    end
    d.stop
  end
end
