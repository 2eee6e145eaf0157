#include "vmm/devices/virtio/block.h"

#include <fcntl.h>
#include <sys/uio.h>

#include <cstring>

#include "base/log.h"

namespace spore::vmm::virtio {
namespace {

constexpr uint64_t kFeatureSegMax = 1ull << 2;
constexpr uint64_t kFeatureRo = 1ull << 5;
constexpr uint64_t kFeatureFlush = 1ull << 9;

constexpr uint32_t kTypeIn = 0;
constexpr uint32_t kTypeOut = 1;
constexpr uint32_t kTypeFlush = 4;
constexpr uint32_t kTypeGetId = 8;

constexpr uint8_t kStatusOk = 0;
constexpr uint8_t kStatusIoErr = 1;
constexpr uint8_t kStatusUnsupported = 2;

constexpr uint32_t kSegMax = 254;  // queue size minus header and status

struct __attribute__((packed)) BlkConfig {
  uint64_t capacity;
  uint32_t size_max;
  uint32_t seg_max;
};

struct __attribute__((packed)) ReqHeader {
  uint32_t type;
  uint32_t reserved;
  uint64_t sector;
};

}  // namespace

Result<std::unique_ptr<Block>> Block::open(const std::string& path, bool read_only, std::string id) {
  SPORE_ASSIGN_OR_RETURN(UniqueFd fd, open_file(path, read_only ? O_RDONLY : O_RDWR));
  auto size = file_size(fd.get());
  if (!size.ok()) return std::move(size).error().wrap(path);
  if (*size < kBlkSectorSize) return make_error(ErrorKind::kCorrupt, path + ": image is smaller than one sector");
  return std::make_unique<Block>(std::move(fd), *size, read_only, std::move(id));
}

Block::Block(UniqueFd fd, uint64_t size, bool read_only, std::string id)
    : fd_(std::move(fd)), size_(size), read_only_(read_only), id_(std::move(id)) {}

uint64_t Block::features() const {
  return kFeatureSegMax | (read_only_ ? kFeatureRo : kFeatureFlush);
}

void Block::read_config(uint64_t offset, uint8_t* data, size_t len) const {
  BlkConfig c{};
  c.capacity = capacity_sectors();
  c.seg_max = kSegMax;
  read_config_bytes(&c, sizeof c, offset, data, len);
}

uint8_t Block::handle(const DescChain& chain, uint64_t data_len, uint32_t* written) {
  const GuestMemory& mem = transport_->memory();
  ChainReader reader(mem, chain);
  ReqHeader h;
  if (!reader.read(&h, sizeof h)) return kStatusIoErr;

  auto in_range = [&](uint64_t len) {
    if (len % kBlkSectorSize) return false;
    uint64_t cap = capacity_sectors();
    return h.sector <= cap && len / kBlkSectorSize <= cap - h.sector;
  };

  switch (h.type) {
    case kTypeIn: {
      if (!in_range(data_len)) {
        LOG_GUEST("virtio-blk: read of %llu bytes at sector %llu is beyond the disk",
                  static_cast<unsigned long long>(data_len), static_cast<unsigned long long>(h.sector));
        return kStatusIoErr;
      }
      ChainWriter w(mem, chain);
      uint64_t off = h.sector * kBlkSectorSize;
      uint64_t left = data_len;
      while (left > 0) {
        auto [p, n] = w.span(left);
        if (!p) return kStatusIoErr;
        if (!pread_exact(fd_.get(), p, n, off).ok()) return kStatusIoErr;
        w.advance(n);
        off += n;
        left -= n;
      }
      *written = static_cast<uint32_t>(data_len);
      return kStatusOk;
    }
    case kTypeOut: {
      if (read_only_) return kStatusIoErr;
      uint64_t len = reader.remaining();
      if (!in_range(len)) return kStatusIoErr;
      uint64_t off = h.sector * kBlkSectorSize;
      std::vector<uint8_t> buf(64 << 10);
      while (len > 0) {
        size_t n = std::min<uint64_t>(len, buf.size());
        if (!reader.read(buf.data(), n)) return kStatusIoErr;
        size_t done = 0;
        while (done < n) {
          ssize_t k = ::pwrite(fd_.get(), buf.data() + done, n - done, static_cast<off_t>(off + done));
          if (k < 0 && errno == EINTR) continue;
          if (k <= 0) return kStatusIoErr;
          done += static_cast<size_t>(k);
        }
        off += n;
        len -= n;
      }
      return kStatusOk;
    }
    case kTypeFlush:
      if (!read_only_ && ::fdatasync(fd_.get()) < 0) return kStatusIoErr;
      return kStatusOk;
    case kTypeGetId: {
      char id[20] = {};
      std::memcpy(id, id_.data(), std::min(id_.size(), sizeof id));
      ChainWriter w(mem, chain);
      size_t n = std::min<uint64_t>(sizeof id, data_len);
      if (!w.write(id, n)) return kStatusIoErr;
      *written = static_cast<uint32_t>(n);
      return kStatusOk;
    }
    default:
      return kStatusUnsupported;
  }
}

void Block::notify(size_t q) {
  if (q != 0 || !transport_) return;
  const GuestMemory& mem = transport_->memory();
  serve_queue(*transport_, 0, [&](const DescChain& chain) -> Result<uint32_t> {
    // The last writable byte is the status; everything writable before it is data.
    if (chain.writable_len == 0) return make_error(ErrorKind::kGuest, "virtio-blk: request without a status byte");
    uint64_t data_len = chain.writable_len - 1;
    uint32_t written = 0;
    uint8_t status = handle(chain, data_len, &written);
    ChainWriter w(mem, chain);
    w.advance(data_len);
    w.write(&status, 1);
    return written + 1;
  });
}

}  // namespace spore::vmm::virtio
