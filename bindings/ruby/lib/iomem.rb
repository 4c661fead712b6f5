# SPDX-License-Identifier: LGPL-2.1-or-later
# iomem: Ruby binding of libiomem (memory regions shared by fd, locally or through iomemd). See docs/ruby.md.
require "iomem_ext"

module IOMem
  # Yield the object to the block and close it at the end; without a block, return it.
  def self.closing(obj)
    return obj unless block_given?

    begin
      yield obj
    ensure
      obj.close unless obj.closed?
    end
  end

  class Region
    # Region.with(size, backend: :auto) { |region| ... } - a local region closed when the block ends.
    def self.with(*args, **kw, &block)
      IOMem.closing(new(*args, **kw), &block)
    end
  end

  # IOMem.new(size) and IOMem.with(size) { } - the seed gem's IO::Memory.new/with, for local regions.
  def self.new(*args, **kw)
    Region.new(*args, **kw)
  end

  def self.with(*args, **kw, &block)
    Region.with(*args, **kw, &block)
  end

  class Client
    # Client.connect(socket: nil, timeout: nil) { |client| ... } - disconnects when the block ends.
    def self.connect(**kw, &block)
      IOMem.closing(new(**kw), &block)
    end

    # Client#watch(prefix = nil) - get events for the regions whose name starts with prefix (nil = all) that
    # this uid may read; every change made after the watch is made is reported. Without a block: the watch id
    # (take the events with next_event or events; the watch exists from this return on, so an Enumerator made
    # lazily could not promise that). With a block: yields each IOMem::Event of this watch (and :overflow),
    # waiting without limit, until the block breaks (events of other watches are skipped meanwhile: use #events
    # with several); the watch is removed when the block ends.
    def watch(prefix = nil)
      return add_watch(prefix) unless block_given?

      id = nil
      begin
        # made inside the begin: an interrupt run as add_watch returns (at the next branch, say) is after the
        # id is in `id`, so the ensure removes the watch (add_watch itself unwatches one whose id it never gave)
        id = add_watch(prefix)
        loop do
          ev = next_event
          yield ev if ev.watch_id == id || ev.kind == :overflow
        end
      ensure
        unwatch(id) if id && !closed?
      end
    end

    # Client#events(timeout: nil) - each event of this connection's watches (next_event again and again).
    # With timeout: seconds, it ends when none came that long; with nil, never (break out). Without a block:
    # an Enumerator.
    def events(timeout: nil)
      return enum_for(:events, timeout: timeout) unless block_given?

      while (ev = next_event(timeout: timeout))
        yield ev
      end
      self
    end
  end
end
