// A small epoll loop. Device back ends (virtio queues kicked through
// ioeventfds, vsock host sockets) run on one such loop in one I/O thread;
// other threads hand it work with post().
#pragma once

#include <sys/epoll.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "base/fd.h"
#include "base/result.h"

namespace spore::vmm {

class EventLoop {
 public:
  using Handler = std::function<void(uint32_t events)>;
  using HandlerId = uint64_t;

  static Result<std::unique_ptr<EventLoop>> create();

  // Watches fd for events; the handler runs on the loop thread. The fd must
  // stay open until remove(). Returns an id for modify()/remove(). add,
  // modify and remove are thread-safe.
  Result<HandlerId> add(int fd, uint32_t events, Handler handler);
  Status modify(HandlerId id, uint32_t events);
  // Safe from inside a handler, including the handler being removed. After
  // it returns on the loop thread the handler is not called again.
  void remove(HandlerId id);

  // Runs fn on the loop thread soon. Thread-safe.
  void post(std::function<void()> fn);

  // Dispatches events until stop(). Call from one thread only.
  void run();
  // Dispatches what is ready within timeout_ms (-1: wait). For tests and for
  // callers that own their thread.
  void run_once(int timeout_ms);
  // Thread-safe; run() returns after the current iteration.
  void stop();
  bool stopping() const;

 private:
  EventLoop() = default;
  void drain_posted();

  struct Entry {
    int fd;
    std::shared_ptr<Handler> handler;
  };
  UniqueFd epoll_;
  UniqueFd wake_;  // eventfd: wakes epoll_wait for post()/stop()
  std::unordered_map<HandlerId, Entry> handlers_;
  HandlerId next_id_ = 1;
  mutable std::mutex mu_;
  std::vector<std::function<void()>> posted_;
  bool stop_ = false;
};

}  // namespace spore::vmm
