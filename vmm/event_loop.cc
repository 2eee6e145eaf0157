#include "vmm/event_loop.h"

#include <sys/eventfd.h>

#include <memory>

#include "base/log.h"

namespace spore::vmm {

namespace {
constexpr uint64_t kWakeId = 0;
}

Result<std::unique_ptr<EventLoop>> EventLoop::create() {
  std::unique_ptr<EventLoop> loop(new EventLoop());
  loop->epoll_.reset(::epoll_create1(EPOLL_CLOEXEC));
  if (!loop->epoll_) return errno_error("epoll_create1");
  loop->wake_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!loop->wake_) return errno_error("eventfd");
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kWakeId;
  if (::epoll_ctl(loop->epoll_.get(), EPOLL_CTL_ADD, loop->wake_.get(), &ev) < 0)
    return errno_error("epoll_ctl");
  return loop;
}

Result<EventLoop::HandlerId> EventLoop::add(int fd, uint32_t events, Handler handler) {
  std::lock_guard<std::mutex> lock(mu_);
  HandlerId id = next_id_++;
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = id;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) < 0) return errno_error("epoll_ctl(ADD)");
  handlers_.emplace(id, Entry{fd, std::make_shared<Handler>(std::move(handler))});
  return id;
}

Status EventLoop::modify(HandlerId id, uint32_t events) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = handlers_.find(id);
  if (it == handlers_.end()) return make_error(ErrorKind::kInternal, "modify of an unknown handler");
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = id;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, it->second.fd, &ev) < 0) return errno_error("epoll_ctl(MOD)");
  return ok_status();
}

void EventLoop::remove(HandlerId id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = handlers_.find(id);
  if (it == handlers_.end()) return;
  ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, it->second.fd, nullptr);
  handlers_.erase(it);
}

void EventLoop::post(std::function<void()> fn) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    posted_.push_back(std::move(fn));
  }
  uint64_t one = 1;
  ssize_t n = ::write(wake_.get(), &one, sizeof one);
  (void)n;  // EAGAIN means a wake-up is already pending
}

void EventLoop::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  uint64_t one = 1;
  ssize_t n = ::write(wake_.get(), &one, sizeof one);
  (void)n;
}

bool EventLoop::stopping() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stop_;
}

void EventLoop::drain_posted() {
  uint64_t v;
  ssize_t n = ::read(wake_.get(), &v, sizeof v);
  (void)n;
  std::vector<std::function<void()>> work;
  {
    std::lock_guard<std::mutex> lock(mu_);
    work.swap(posted_);
  }
  for (auto& fn : work) fn();
}

void EventLoop::run_once(int timeout_ms) {
  epoll_event events[64];
  int n = ::epoll_wait(epoll_.get(), events, 64, timeout_ms);
  if (n < 0) {
    if (errno != EINTR) LOG_ERROR("epoll_wait: %s", std::strerror(errno));
    return;
  }
  for (int i = 0; i < n; i++) {
    HandlerId id = events[i].data.u64;
    if (id == kWakeId) {
      drain_posted();
      continue;
    }
    std::shared_ptr<Handler> h;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = handlers_.find(id);
      if (it == handlers_.end()) continue;  // removed by an earlier handler this round
      h = it->second.handler;  // keeps it alive if it removes itself
    }
    (*h)(events[i].events);
  }
}

void EventLoop::run() {
  while (!stopping()) run_once(-1);
}

}  // namespace spore::vmm
