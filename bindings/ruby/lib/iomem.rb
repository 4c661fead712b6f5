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
  end
end
