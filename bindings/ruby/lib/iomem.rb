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

    # ---- under a Fiber::Scheduler (docs/ruby.md "Fiber scheduler") ----
    # The extension calls these when the current fiber is non-blocking under a scheduler
    # (rb_fiber_scheduler_current()): the request goes through libiomem's asynchronous API, and the fiber waits
    # for the client's socket with the scheduler's io_wait, so the thread's other fibers run meanwhile.

    # Longest io_wait: a blocking call of another thread on this client may read our reply meanwhile (libiomem
    # keeps it for iomem_client_process() without making the socket readable), so the wait looks again this often.
    FIBER_SLICE = 0.2

    # A fiber's waiting OPEN asks the daemon to wait at most this long (ms), then asks again with what is left: a
    # cancelled one (libiomem cannot take it back) stays parked in the daemon, taking one of the connection's 64
    # waiting OPENs, this long at most. The request kinds are the extension's enum fiber_kind.
    FIBER_WAIT_SLICE_MS = 1000
    FIBER_OPEN = 0

    # Which fiber of one scheduler reads the socket, and that scheduler's fibers waiting for it to say something
    # came (fiber_wait).
    FiberWaits = Struct.new(:reader, :waiters)
    private_constant :FiberWaits

    private

    def fiber_request(kind, name, flags, wait_ms, after)
      deadline = fiber_now + wait_ms / 1000.0 if wait_ms.positive?
      reconnected = false
      begin
        sliced = kind == FIBER_OPEN && (wait_ms.negative? || wait_ms > FIBER_WAIT_SLICE_MS)
        req = __fiber_submit(kind, name, flags, sliced ? FIBER_WAIT_SLICE_MS : wait_ms, after)
        begin
          fiber_wait { req.done? }
        rescue Exception # rubocop:disable Lint/RescueException -- a fiber raised into, killed, timed out
          req.abandon # libiomem cannot take the request back: a region its late reply brings is closed
          raise
        end
        req.take
      rescue Errno::ETIMEDOUT
        # the daemon's answer to a slice, the connection intact (a reply timeout ends it): ask again
        raise unless sliced && !__fiber_broken?

        wait_ms = fiber_left_ms(deadline) if deadline
        retry
      rescue Errno::EDQUOT
        # the connection's waiting OPENs are all taken (cancelled ones among them end within a slice): wait for
        # one of the client's requests to end, then ask again
        ended, outstanding = __fiber_slots
        raise unless kind == FIBER_OPEN && wait_ms != 0 && outstanding
        unless fiber_wait(deadline) { __fiber_slots[0] != ended }
          raise Errno::ETIMEDOUT, "open \"#{name}\": the connection's waiting OPENs stayed all taken (64 at most)"
        end

        wait_ms = fiber_left_ms(deadline) if deadline
        retry
      rescue Errno::ECONNRESET, Errno::ENOTCONN, Errno::EPIPE
        # the daemon went away: OPEN, STAT and PING change nothing, so connect again (a blocking ping, as a
        # blocking call would) and ask once more, a waiting open with what is left of its time; not after a
        # close (by another fiber while this one waited)
        raise if reconnected || closed?

        reconnected = true
        __reconnect
        wait_ms = fiber_left_ms(deadline) if deadline
        retry
      end
    end

    # what is left until the deadline, in ms, at least 1 (a waiting open asked again)
    def fiber_left_ms(deadline)
      [((deadline - fiber_now) * 1000).ceil, 1].max
    end

    def fiber_now
      Process.clock_gettime(Process::CLOCK_MONOTONIC)
    end

    def fiber_next_event(timeout)
      deadline = fiber_now + timeout if timeout
      ev = nil
      fiber_wait(deadline) { ev = __fiber_next_event }
      ev
    end

    # Wait, yielding to the scheduler, until the block is true or the deadline (monotonic seconds) has passed.
    # One fiber of each scheduler at a time waits on the socket (the reader) and runs iomem_client_process(),
    # which completes every fiber's requests and keeps events for next_event; the scheduler's others wait in its
    # block and are woken after each process to look again (one of them reads next). The state is the
    # scheduler's own: a scheduler is asked to unblock only its own fibers (unblock of another thread's fiber
    # resumes it on the wrong thread), and a scheduler whose thread died with its reader suspended (Thread#kill)
    # leaves no reader that other schedulers' fibers would wait for without end. Each scheduler's reader waits
    # at most FIBER_SLICE: the other's process may read its reply. Return: whether the block became true.
    def fiber_wait(deadline = nil)
      scheduler = Fiber.scheduler
      all = (@fiber_waits ||= ObjectSpace::WeakMap.new) # a dead thread's scheduler and its fibers stay collectable
      until yield
        left = deadline && deadline - fiber_now
        return false if left&.<=(0)

        waits = (all[scheduler] ||= FiberWaits.new(nil, [])) # held by the fibers using it (weakly by the map)
        if waits.reader
          waits.waiters << Fiber.current
          begin
            scheduler.block(waits, left)
          ensure
            waits.waiters.delete(Fiber.current)
          end
          next
        end
        waits.reader = Fiber.current
        begin
          events, due = __fiber_state
          wait = [due, left, FIBER_SLICE].compact.min
          if wait.positive?
            # an IO over a duplicate of the client's socket (closing it never closes the socket, and a close of
            # the client by another fiber meanwhile leaves it open); a new one each time: the socket changes when
            # the client connects again
            io = __fiber_io
            begin
              scheduler.io_wait(io, events, wait)
            ensure
              io.close
            end
          end
          __fiber_process
        ensure
          waits.reader = nil
          woken = waits.waiters
          waits.waiters = []
          woken.each { |f| scheduler.unblock(waits, f) }
        end
      end
      true
    end
  end
end
