// End-to-end: daemon mode (doc/apps.md): one warm VM per app and user,
// started, used, stopped, killed and raced as users and scripts do.
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <catch2/catch.hpp>
#include <filesystem>
#include <thread>

#include "tests/integration/apps.h"

using namespace spore::itest;
namespace fs = std::filesystem;

TEST_CASE("daemon: start, exec, status, stop", "[app][daemon]") {
  AppCopy app = sealed_bundle_copy();
  auto start = app({"start"});
  INFO(start.err);
  REQUIRE(start.status == 0);
  CHECK(app({"start"}).status == 0);  // harmless twice
  CHECK_THAT(app({"start"}).err, Catch::Contains("already running"));
  auto e = app({"exec", "sh", "-c", "echo in-daemon; exit 5"});
  CHECK(e.out == "in-daemon\n");
  CHECK(e.status == 5);
  auto st = app({"status"});
  CHECK(st.status == 0);
  CHECK_THAT(st.out, Catch::StartsWith("running, pid "));
  auto js = app({"status", "--json"});
  CHECK_THAT(js.out, Catch::Contains("\"state\":\"running\""));
  // exec keeps one-shot semantics: timeout, not found, stdin.
  CHECK(app({"exec", "--timeout", "1s", "sleep", "30"}).status == 124);
  CHECK(app({"exec", "/nonexistent"}).status == 127);
  RunOptions in;
  in.stdin_open = true;
  in.stdin_data = "to the daemon\n";
  auto cat = app({"exec", "-i", "cat"}, in);
  CHECK(cat.status == 0);
  CHECK(cat.out == "to the daemon\n");

  // 100 concurrent execs, each output checked byte for byte.
  constexpr int kExecs = 100;
  std::vector<RunResult> results(kExecs);
  std::vector<std::thread> threads;
  auto expected = [](int i) {
    std::string line = "exec-" + std::to_string(i) + "\n", want;
    while (want.size() < 16384) want += line;
    return want.substr(0, 16384);
  };
  for (int i = 0; i < kExecs; i++)
    threads.emplace_back([&, i] {
      results[i] = app({"exec", "sh", "-c", "yes exec-" + std::to_string(i) + " | head -c 16384; exit " + std::to_string(i % 7)});
    });
  for (auto& t : threads) t.join();
  int good = 0;
  for (int i = 0; i < kExecs; i++) {
    if (results[i].status == i % 7 && results[i].out == expected(i)) good++;
    else WARN("exec " << i << ": status " << results[i].status << ", " << results[i].out.size() << " bytes out, err " << results[i].err);
  }
  CHECK(good == kExecs);

  auto stop = app({"stop"});
  CHECK(stop.status == 0);
  auto after = app({"status"});
  CHECK(after.status == 3);
  CHECK(after.out == "stopped\n");
  auto ex = app({"exec", "true"});
  CHECK(ex.status == 69);
  CHECK_THAT(ex.err, Catch::Contains("not running"));
  CHECK(app({"stop"}).status == 0);  // stopping a stopped app is harmless
  CHECK(nothing_left_running(app.dir));
}

TEST_CASE("daemon: a killed monitor is noticed by exec and status, and start recovers", "[app][daemon]") {
  AppCopy app = sealed_bundle_copy();
  REQUIRE(app({"start"}).status == 0);
  pid_t pid = monitor_pid(app);
  REQUIRE(pid > 0);
  REQUIRE(::kill(pid, SIGKILL) == 0);
  REQUIRE(wait_for(30, [&] { return process_gone(pid); }));
  auto ex = app({"exec", "true"});
  CHECK(ex.status == 69);
  CHECK_THAT(ex.err, Catch::Contains("not running (cleaned up after a monitor that died)"));
  CHECK(app({"status"}).out == "stopped\n");  // exec cleaned up already

  REQUIRE(app({"start"}).status == 0);  // and it starts again
  pid = monitor_pid(app);
  REQUIRE(pid > 0);
  REQUIRE(::kill(pid, SIGKILL) == 0);
  REQUIRE(wait_for(30, [&] { return process_gone(pid); }));
  auto st = app({"status"});
  CHECK(st.status == 3);
  CHECK(st.out == "stopped (cleaned up after a monitor that died)\n");
  REQUIRE(app({"start"}).status == 0);
  auto back = app({"exec", "echo", "back"});
  CHECK(back.status == 0);
  CHECK(back.out == "back\n");
  CHECK(app({"stop"}).status == 0);
  CHECK(nothing_left_running(app.dir));
}

TEST_CASE("daemon: concurrent starts leave exactly one monitor, and probes never break it", "[app][daemon]") {
  AppCopy app = sealed_bundle_copy();
  std::atomic<bool> starting{true};
  // Meanwhile, status probes (which clean up after dead monitors) race the
  // monitor coming up: they must never take its socket away.
  std::thread prober([&] {
    while (starting) app({"status"});
  });
  std::vector<RunResult> starts(4);
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; i++) threads.emplace_back([&, i] { starts[i] = app({"start"}); });
  for (auto& t : threads) t.join();
  starting = false;
  prober.join();
  int started = 0, already = 0;
  for (const auto& s : starts) {
    INFO(s.err);
    CHECK(s.status == 0);
    if (s.err.find("started (pid") != std::string::npos) started++;
    if (s.err.find("already running") != std::string::npos) already++;
  }
  CHECK(started == 1);
  CHECK(already == 3);
  // The starts have exited: what runs the app's program now is the monitor.
  CHECK(processes_running(app.path).size() == 1);
  auto e = app({"exec", "echo", "one"});
  CHECK(e.status == 0);
  CHECK(e.out == "one\n");
  CHECK(app({"stop"}).status == 0);
  CHECK(nothing_left_running(app.dir));
}

TEST_CASE("daemon: stop --timeout forces a monitor that does not stop in time", "[app][daemon]") {
  AppCopy app = sealed_bundle_copy();
  REQUIRE(app({"start"}).status == 0);
  pid_t pid = monitor_pid(app);
  REQUIRE(pid > 0);
  REQUIRE(::kill(pid, SIGSTOP) == 0);  // it cannot answer STOP now
  auto stop = app({"stop", "--timeout", "1s"});
  CHECK(stop.status == 0);
  CHECK_THAT(stop.err, Catch::Contains("stopped (forcibly)"));
  CHECK(wait_for(30, [&] { return process_gone(pid); }));
  CHECK(app({"status"}).status == 3);
  CHECK(nothing_left_running(app.dir));
}

TEST_CASE("daemon: the runtime directory is XDG_RUNTIME_DIR/spore or /tmp/spore-UID, and must be private", "[app][daemon]") {
  AppCopy app = sealed_bundle_copy();
  SECTION("without XDG_RUNTIME_DIR") {
    RunOptions o;
    o.env = {"XDG_RUNTIME_DIR"};
    std::string dir = "/tmp/spore-" + std::to_string(::getuid());
    REQUIRE(app({"start"}, o).status == 0);
    bool sock = false;
    for (auto& e : fs::directory_iterator(dir))
      if (e.path().extension() == ".sock") sock = true;
    CHECK(sock);
    CHECK((fs::status(dir).permissions() & fs::perms::all) == fs::perms::owner_all);
    auto e = app({"exec", "echo", "fallback"}, o);
    CHECK(e.status == 0);
    CHECK(e.out == "fallback\n");
    CHECK(app({"stop"}, o).status == 0);
  }
  SECTION("a runtime directory others can write") {
    fs::create_directories(app.runtime + "/spore");
    fs::permissions(app.runtime + "/spore", fs::perms::owner_all | fs::perms::group_all, fs::perm_options::replace);
    auto r = app({"start"});
    CHECK(r.status == 69);
    CHECK_THAT(r.err, Catch::Contains("not a private directory owned by you"));
  }
  SECTION("a runtime directory another user owns") {
    fs::create_directories(app.runtime + "/spore");
    fs::permissions(app.runtime + "/spore", fs::perms::owner_all, fs::perm_options::replace);
    REQUIRE(::chown((app.runtime + "/spore").c_str(), 65534, 65534) == 0);
    auto r = app({"start"});
    CHECK(r.status == 69);
    CHECK_THAT(r.err, Catch::Contains("not a private directory owned by you"));
    CHECK(app({"exec", "true"}).status == 69);
  }
  CHECK(nothing_left_running(app.dir));
}

TEST_CASE("daemon: clients beyond the monitor's cap are refused at once, and it keeps serving", "[app][daemon]") {
  AppCopy app = sealed_bundle_copy();
  REQUIRE(app({"start"}).status == 0);
  std::string sock;
  for (auto& e : fs::directory_iterator(app.runtime + "/spore"))
    if (e.path().extension() == ".sock") sock = e.path();
  REQUIRE_FALSE(sock.empty());
  // Connections that never say what they want: each holds a monitor thread
  // until its 10 s request deadline.
  std::vector<int> held;
  for (int i = 0; i < 400; i++) {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::memcpy(a.sun_path, sock.c_str(), sock.size() + 1);
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    held.push_back(fd);
  }
  // Those answered without being asked were refused. (Well inside the
  // held ones' 10 s deadline: wait for the last refusal, then look.)
  pollfd last{held.back(), POLLIN, 0};
  CHECK(::poll(&last, 1, 5000) == 1);
  std::string refusal;
  size_t refused = 0;
  for (int fd : held) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 0) <= 0) continue;
    char buf[256];
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) continue;
    if (refusal.empty()) refusal.assign(buf, static_cast<size_t>(n));
    refused++;
  }
  CHECK(refused == held.size() - 320);
  CHECK_THAT(refusal, Catch::StartsWith("ERR the daemon is busy"));
  for (int fd : held) ::close(fd);
  auto e = app({"exec", "echo", "still-serving"});
  CHECK(e.status == 0);
  CHECK(e.out == "still-serving\n");
  CHECK(app({"stop"}).status == 0);
  CHECK(nothing_left_running(app.dir));
}
