// End-to-end: spore-vm boots the project's kernel, agent and demo rootfs on
// real KVM and runs commands through the agent.
#include <signal.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <random>

#include "tests/integration/confined.h"
#include "tests/integration/harness.h"

using namespace spore::itest;

TEST_CASE("echo output arrives intact", "[vm]") {
  auto r = vm_run({"echo", "hello", "spore  world"});
  INFO(r.err);
  CHECK(r.status == 0);
  CHECK(r.out == "hello spore  world\n");
}

TEST_CASE("exit codes pass through, including death by signal", "[vm]") {
  auto r = vm_run({"sh", "-c", "exit 3"});
  CHECK(r.status == 3);
  auto t = vm_run({"true"});
  CHECK(t.status == 0);
  auto k = vm_run({"sh", "-c", "kill -TERM $$"});
  CHECK(k.status == 128 + 15);
}

TEST_CASE("a guest not ready within --boot-timeout: exit 75, one line, nothing left", "[vm]") {
  // No kernel reaches its agent in a millisecond, on any machine.
  auto r = vm_run({"true"}, {"--boot-timeout", "1ms"});
  CHECK(r.status == 75);
  REQUIRE(r.err.rfind("spore-vm: ", 0) == 0);
  CHECK_THAT(r.err.substr(0, r.err.find('\n')), Catch::Contains("did not report ready"));
  // Only console lines (marked) may follow the one message line.
  std::string rest = r.err.substr(r.err.find('\n') + 1);
  for (size_t at = 0; at < rest.size(); at = rest.find('\n', at) + 1) CHECK(rest.compare(at, 4, "  | ") == 0);
  CHECK(r.out.empty());
}

TEST_CASE("stderr is kept apart from stdout", "[vm]") {
  auto r = vm_run({"sh", "-c", "echo to-out; echo to-err >&2; echo more-out"});
  CHECK(r.status == 0);
  CHECK(r.out == "to-out\nmore-out\n");
  CHECK(r.err == "to-err\n");
}

TEST_CASE("stdin reaches the command with -i, and only then", "[vm]") {
  RunOptions o;
  o.stdin_open = true;
  o.stdin_data = "line one\nline two\n";
  auto r = vm_run({"sh", "-c", "while read l; do echo \"got: $l\"; done"}, {"-i"}, o);
  CHECK(r.status == 0);
  CHECK(r.out == "got: line one\ngot: line two\n");
  auto n = vm_run({"cat"}, {}, o);  // without -i the command's stdin is /dev/null
  CHECK(n.status == 0);
  CHECK(n.out.empty());
}

TEST_CASE("4 MiB of output arrives byte-exact, and 4 MiB of input too", "[vm]") {
  auto r = vm_run({"sh", "-c", "head -c 4194304 /dev/urandom > /tmp/blob && sha256sum /tmp/blob >&2 && cat /tmp/blob"});
  REQUIRE(r.status == 0);
  REQUIRE(r.out.size() == 4u << 20);
  CHECK(r.err.substr(0, 64) == sha256_hex(r.out));

  std::mt19937_64 rng(42);
  std::string data(4u << 20, '\0');
  for (auto& c : data) c = static_cast<char>(rng());
  RunOptions o;
  o.stdin_open = true;
  o.stdin_data = data;
  auto e = vm_run({"cat"}, {"-i"}, o);
  REQUIRE(e.status == 0);
  CHECK(e.out.size() == data.size());
  CHECK(e.out == data);
}

TEST_CASE("the rootfs is read-only while /tmp is writable", "[vm]") {
  std::string image = assets_dir() + "/demo-rootfs.img";
  std::string before = sha256_file(image);
  SECTION("--read-only: / refuses writes, /tmp takes them") {
    auto r = vm_run({"sh", "-c", "touch /etc/spore-probe; echo rc=$?; echo data > /tmp/x && cat /tmp/x"},
                    {"--read-only"});
    CHECK(r.status == 0);
    CHECK(r.out == "rc=1\ndata\n");
    CHECK_THAT(r.err, Catch::Contains("Read-only file system"));
  }
  SECTION("default: writes land in the overlay; the disk itself is read-only") {
    auto r = vm_run({"sh", "-c", "echo x > /etc/spore-probe && cat /etc/spore-probe && cat /sys/block/vda/ro && "
                                 "echo y > /tmp/t && cat /tmp/t"});
    CHECK(r.status == 0);
    CHECK(r.out == "x\n1\ny\n");
  }
  CHECK(sha256_file(image) == before);
}

TEST_CASE("two vCPUs come up", "[vm]") {
  auto r = vm_run({"grep", "-c", "^processor", "/proc/cpuinfo"}, {"--cpus", "2"});
  CHECK(r.status == 0);
  CHECK(r.out == "2\n");
}

TEST_CASE("a command that does not exist exits 127 with a clear message", "[vm]") {
  auto r = vm_run({"/nonexistent"});
  CHECK(r.status == 127);
  CHECK_THAT(r.err, Catch::Contains("/nonexistent") && Catch::Contains("no such file or directory"));
  auto p = vm_run({"no-such-command"});
  CHECK(p.status == 127);
  CHECK_THAT(p.err, Catch::Contains("executable file not found"));
}

TEST_CASE("environment, working directory and user are applied", "[vm]") {
  auto r = vm_run({"sh", "-c", "echo $GREETING; pwd; id -u; echo $HOME"},
                  {"-e", "GREETING=hi there", "-w", "/tmp", "-u", "nobody"});
  CHECK(r.status == 0);
  CHECK(r.out == "hi there\n/tmp\n65534\n/nonexistent\n");
  auto bad = vm_run({"true"}, {"-w", "/no/such/dir"});
  CHECK(bad.status == 126);
  CHECK_THAT(bad.err, Catch::Contains("/no/such/dir"));
}

TEST_CASE("--timeout kills the command and exits 124", "[vm]") {
  auto r = vm_run({"sleep", "600"}, {"--timeout", "2s"});
  CHECK(r.status == 124);
  CHECK_THAT(r.err, Catch::Contains("timed out"));
}

TEST_CASE("bad input gets one clear line and a documented exit code", "[vm]") {
  SECTION("missing kernel") {
    auto r = vm_run({"true"}, {"--kernel", "/nonexistent/Image"});
    CHECK(r.status == 66);
    CHECK_THAT(r.err, Catch::Contains("/nonexistent/Image"));
  }
  SECTION("not a kernel") {
    auto r = vm_run({"true"}, {"--kernel", "/proc/self/exe"});
    CHECK(r.status == 65);
  }
  SECTION("missing rootfs") {
    auto r = vm_run({"true"}, {"--rootfs", "/nonexistent.img"});
    CHECK(r.status == 66);
  }
  SECTION("nonsense sizes") {
    CHECK(vm_run({"true"}, {"--mem", "1"}).status == 64);
    CHECK(vm_run({"true"}, {"--mem", "lots"}).status == 64);
    CHECK(vm_run({"true"}, {"--cpus", "0"}).status == 64);
    CHECK(vm_run({"true"}, {"--cpus", "999"}).status == 64);
  }
  SECTION("no KVM device") {
    RunOptions o;
    o.env = {"SPORE_KVM_DEVICE=/nonexistent/kvm"};
    auto r = vm_run({"true"}, {}, o);
    CHECK(r.status == 69);
    CHECK_THAT(r.err, Catch::Contains("KVM"));
  }
  SECTION("no command") {
    auto r = run({"spore-vm", "run"});
    CHECK(r.status == 64);
  }
}

TEST_CASE("signals while the guest boots: a resize is ignored, Ctrl-C ends the run with 130", "[vm]") {
  RunOptions resize;
  resize.kill_after_stderr = "Linux version";  // the guest's first console line: booting has begun
  resize.kill_signal = SIGWINCH;
  auto r = vm_run({"echo", "booted"}, {"--console"}, resize);
  CHECK(r.status == 0);
  CHECK(r.out == "booted\n");
  RunOptions ctrl_c = resize;
  ctrl_c.kill_signal = SIGINT;
  auto c = vm_run({"echo", "booted"}, {"--console"}, ctrl_c);
  CHECK(c.status == 130);
  CHECK(c.out.empty());
  CHECK_THAT(c.err, Catch::Contains("spore-vm: interrupted by SIGINT while the guest was booting"));
}

TEST_CASE("spore-vm run confines every thread with a seccomp filter and no_new_privs while the command runs", "[vm]") {
  std::vector<ThreadConfinement> threads;
  RunOptions o;
  o.kill_after_output = "ready\n";
  o.kill_signal = SIGTERM;  // forwarded: ends the guest command
  o.on_output = [&](pid_t pid) { threads = thread_confinement(pid); };
  auto r = vm_run({"sh", "-c", "echo ready; sleep 600"}, {"--cpus", "2"}, o);
  INFO(r.err);
  CHECK(r.status == 128 + SIGTERM);
  check_confined(threads, 4);  // main, device, 2 vCPUs
}

TEST_CASE("only SPORE_SECCOMP=off runs the VMM unconfined and says so - other values are refused", "[vm]") {
  std::vector<ThreadConfinement> threads;
  RunOptions o;
  o.kill_after_output = "ready\n";
  o.kill_signal = SIGTERM;
  o.on_output = [&](pid_t pid) { threads = thread_confinement(pid); };
  o.env = {"SPORE_SECCOMP=off"};
  auto off = vm_run({"sh", "-c", "echo ready; sleep 600"}, {}, o);
  CHECK(off.status == 128 + SIGTERM);
  CHECK_THAT(off.err, Catch::Contains("SPORE_SECCOMP=off: the VMM runs without its syscall filter"));
  REQUIRE(threads.size() >= 3);
  for (const auto& t : threads) CHECK(t.seccomp == 0);

  RunOptions bad;
  bad.env = {"SPORE_SECCOMP=no"};
  auto r = vm_run({"true"}, {}, bad);
  CHECK(r.status == 64);
  CHECK(r.err == "spore-vm: SPORE_SECCOMP=no: expected on, log or off\n");
}

TEST_CASE("a guest that powers off mid-command ends the run as a guest failure and not as a seccomp stop", "[vm]") {
  // Powering off resets the vsock device from a vCPU thread, which then
  // drops the host connections (close, EPOLL_CTL_DEL): its policy allows that.
  auto r = vm_run({"sh", "-c", "echo bye; poweroff -f; sleep 10"});
  INFO(r.err);
  CHECK(r.status == 70);
  CHECK(r.out == "bye\n");
  CHECK_THAT(r.err, !Catch::Contains("seccomp"));
}

#if defined(__x86_64__)
TEST_CASE("x86_64: capturing or resuming a spore is refused at once with exit 69 and one line", "[vm]") {
  std::string dir = temp_dir();
  auto r = vm_run({"true"}, {"--capture", dir + "/base"});
  CHECK(r.status == 69);
  CHECK(r.err == "spore-vm: spores (capture, resume) are not implemented on x86_64 yet\n");
  CHECK(r.out.empty());
  // Before it looks for the spore.
  auto s = run({"spore-vm", "resume", dir + "/base", "--", "true"});
  CHECK(s.status == 69);
  CHECK(s.err == "spore-vm: spores (capture, resume) are not implemented on x86_64 yet\n");
  ::rmdir(dir.c_str());
}
#endif
