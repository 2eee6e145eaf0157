#include "tests/integration/apps.h"

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

namespace fs = std::filesystem;

namespace spore::itest {

std::string apps_dir() {
  const char* d = std::getenv("SPORE_TEST_APPS");
  REQUIRE(d);  // set by ctest: tests/integration/pack-apps.sh output
  return d;
}

AppCopy::AppCopy(const std::string& name, const std::string& as) {
  dir = temp_dir();
  path = dir + "/" + (as.empty() ? name : as);
  fs::copy_file(apps_dir() + "/" + name, path);
  fs::copy_file(apps_dir() + "/" + name + ".spore", path + ".spore");
  fs::permissions(path, fs::perms::owner_all);
  cache = dir + "/cache";
  runtime = dir + "/run";
  fs::create_directories(runtime);
  fs::permissions(runtime, fs::perms::owner_all, fs::perm_options::replace);
}

std::vector<std::string> AppCopy::env() const { return {"SPORE_CACHE_DIR=" + cache, "XDG_RUNTIME_DIR=" + runtime}; }

RunResult AppCopy::operator()(const std::vector<std::string>& args, RunOptions o) const {
  std::vector<std::string> argv = {path};
  argv.insert(argv.end(), args.begin(), args.end());
  auto e = env();
  o.env.insert(o.env.begin(), e.begin(), e.end());
  return run(argv, o);
}

const AppCopy& sealed_demo() {
  static AppCopy* app = nullptr;
  if (!app) {
    app = new AppCopy("demo");
    auto r = (*app)({"true"});
    INFO(r.err);
    REQUIRE(r.status == 0);
  }
  return *app;
}

AppCopy sealed_bundle_copy() {
  static AppCopy* sealed = nullptr;
  if (!sealed) {
    sealed = new AppCopy("demo");
    auto r = (*sealed)({"--spore-seal"});
    INFO(r.err);
    REQUIRE(r.status == 0);
  }
  AppCopy copy("demo");
  fs::copy_file(sealed->path + ".spore", copy.path + ".spore", fs::copy_options::overwrite_existing);
  return copy;
}

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

std::vector<pid_t> processes_running(const std::string& path) {
  std::vector<pid_t> pids;
  for (auto& e : fs::directory_iterator("/proc")) {
    std::error_code ec;
    auto exe = fs::read_symlink(e.path() / "exe", ec);
    if (!ec && exe.string() == path) pids.push_back(std::atoi(e.path().filename().c_str()));
  }
  return pids;
}

bool process_gone(pid_t pid) {
  std::string proc = "/proc/" + std::to_string(pid);
  std::ifstream f(proc + "/stat");
  std::string stat((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  auto paren = stat.rfind(')');
  if (paren == std::string::npos) return true;
  if (stat.compare(paren + 1, 3, " Z ") != 0) return false;
  // A zombie leader may still have threads exiting that hold its files
  // (and the monitor's lock): gone once they are, and its fds closed.
  std::error_code ec;
  size_t tasks = 0;
  for (auto it = fs::directory_iterator(proc + "/task", ec); !ec && it != fs::directory_iterator(); it.increment(ec))
    tasks++;
  bool fds = false;
  for (auto it = fs::directory_iterator(proc + "/fd", ec); !ec && it != fs::directory_iterator(); it.increment(ec))
    fds = true;
  return tasks <= 1 && !fds;
}

pid_t monitor_pid(const AppCopy& app) {
  auto js = app({"status", "--json"});
  auto pos = js.out.find("\"pid\":");
  return pos == std::string::npos ? 0 : std::stoi(js.out.substr(pos + 6));
}

bool wait_for(int timeout_s, const std::function<bool()>& cond) {
  auto end = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
  while (!cond()) {
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return true;
}

bool nothing_left_running(const std::string& dir) {
  return wait_for(10, [&] {
    for (auto& e : fs::directory_iterator("/proc")) {
      std::error_code ec;
      auto exe = fs::read_symlink(e.path() / "exe", ec);
      if (!ec && exe.string().rfind(dir, 0) == 0) return false;
    }
    return true;
  });
}

}  // namespace spore::itest
