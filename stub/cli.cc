#include "stub/cli.h"

#include "base/strings.h"

namespace spore::stub {
namespace {

Error usage_error(const std::string& msg) { return make_error(ErrorKind::kUsage, msg); }

}  // namespace

Result<Options> parse_args(const std::vector<std::string>& args) {
  Options o;
  size_t i = 0;
  if (!args.empty()) {
    const std::string& first = args[0];
    if (first == "start") o.mode = Mode::kStart;
    else if (first == "exec") o.mode = Mode::kExec;
    else if (first == "stop") o.mode = Mode::kStop;
    else if (first == "status") o.mode = Mode::kStatus;
    else if (first == "--spore-seal") o.mode = Mode::kSeal;
    if (o.mode != Mode::kRun) i = 1;
  }
  const bool takes_command = o.mode == Mode::kRun || o.mode == Mode::kExec;
  const bool takes_exec_opts = takes_command;
  const bool takes_machine_opts = o.mode == Mode::kRun || o.mode == Mode::kStart || o.mode == Mode::kSeal;

  for (; i < args.size(); i++) {
    std::string a = args[i];
    if (a == "--") {
      if (!takes_command) return usage_error("unexpected '--'");
      o.command.assign(args.begin() + static_cast<long>(i) + 1, args.end());
      break;
    }
    if (a.empty() || a[0] != '-' || a == "-") {
      if (!takes_command) return usage_error("unexpected argument '" + a + "'");
      o.command.assign(args.begin() + static_cast<long>(i), args.end());
      break;
    }
    // --name=value splits; short flags may be bundled (-it).
    std::string value;
    bool has_value = false;
    if (a.rfind("--", 0) == 0) {
      auto eq = a.find('=');
      if (eq != std::string::npos) {
        value = a.substr(eq + 1);
        a = a.substr(0, eq);
        has_value = true;
      }
    } else if (a.size() > 2) {
      // -it, -ie K=V (value flag last), -eK=V
      bool all_flags = true;
      for (size_t k = 1; k < a.size(); k++)
        if (a[k] != 'i' && a[k] != 't') all_flags = false;
      if (all_flags) {
        for (size_t k = 1; k < a.size(); k++) (a[k] == 'i' ? o.interactive : o.tty) = true;
        if (!takes_exec_opts) return usage_error("option " + a + " applies to running a command");
        continue;
      }
      value = a.substr(2);
      a = a.substr(0, 2);
      has_value = true;
    }
    auto need = [&](const char* name) -> Result<std::string> {
      if (has_value) return value;
      if (i + 1 >= args.size()) return usage_error(std::string(name) + " needs a value");
      return args[++i];
    };
    auto exec_only = [&]() -> Status {
      if (!takes_exec_opts) return usage_error("option " + a + " applies to running a command");
      return ok_status();
    };
    if (a == "-h" || a == "--help") {
      o.mode = Mode::kHelp;
      return o;
    }
    if (a == "--version") {
      o.mode = Mode::kVersion;
      return o;
    }
    if (a == "-e" || a == "--env") {
      SPORE_TRY(exec_only());
      SPORE_ASSIGN_OR_RETURN(std::string v, need("-e"));
      if (v.empty() || v[0] == '=') return usage_error("-e " + v + ": expected KEY=VALUE or KEY");
      o.env.push_back(v);
    } else if (a == "-w" || a == "--workdir") {
      SPORE_TRY(exec_only());
      SPORE_ASSIGN_OR_RETURN(o.workdir, need("-w"));
      if (o.workdir.empty() || o.workdir[0] != '/') return usage_error("-w: the working directory must be absolute");
    } else if (a == "-u" || a == "--user") {
      SPORE_TRY(exec_only());
      SPORE_ASSIGN_OR_RETURN(o.user, need("-u"));
    } else if (a == "-i" || a == "--interactive") {
      SPORE_TRY(exec_only());
      o.interactive = true;
    } else if (a == "-t" || a == "--tty") {
      SPORE_TRY(exec_only());
      o.tty = true;
    } else if (a == "--timeout") {
      if (o.mode == Mode::kStop) {
        SPORE_ASSIGN_OR_RETURN(o.stop_timeout, need("--timeout"));
        if (!parse_duration_ms(o.stop_timeout)) return usage_error("--timeout: expected a duration like 30s or 500ms");
        continue;
      }
      SPORE_TRY(exec_only());
      SPORE_ASSIGN_OR_RETURN(o.timeout, need("--timeout"));
      auto ms = parse_duration_ms(o.timeout);
      if (!ms || *ms == 0 || *ms > UINT32_MAX) return usage_error("--timeout: expected a duration like 30s, 500ms or 2m");
    } else if (a == "--cpus") {
      if (!takes_machine_opts) return usage_error("--cpus applies to a run or start");
      SPORE_ASSIGN_OR_RETURN(std::string v, need("--cpus"));
      auto n = parse_u64(v);
      if (!n || *n < 1 || *n > 32) return usage_error("--cpus: expected a number from 1 to 32");
      o.cpus = static_cast<uint32_t>(*n);
    } else if (a == "--mem") {
      if (!takes_machine_opts) return usage_error("--mem applies to a run or start");
      SPORE_ASSIGN_OR_RETURN(std::string v, need("--mem"));
      auto n = parse_size(v, 1ull << 20);
      if (!n || *n < (64ull << 20) || *n % (1ull << 20) || *n > (64ull << 30))
        return usage_error("--mem: expected MiB from 64 to 65536 (e.g. 512 or 2G)");
      o.mem_mib = *n >> 20;
    } else if (a == "--json") {
      if (o.mode != Mode::kStatus) return usage_error("--json applies to status");
      o.json = true;
    } else {
      return usage_error("unknown option " + a);
    }
  }
  if (o.mode == Mode::kExec && o.command.empty()) return usage_error("exec needs a command");
  if (o.tty && !o.interactive && o.mode != Mode::kHelp) {
    // docker allows -t alone; a tty without input is still useful for output formatting.
  }
  return o;
}

std::string usage(const std::string& app) {
  return strfmt(
      "usage: %1$s [options] [--] [COMMAND [ARG...]]   run COMMAND (default: the image's) in a fresh microVM\n"
      "       %1$s start [--cpus N] [--mem MiB]          start a warm microVM in the background\n"
      "       %1$s exec [options] [--] COMMAND [ARG...]   run COMMAND in the started microVM\n"
      "       %1$s status [--json]                       is it running? (exit 0 yes, 3 no)\n"
      "       %1$s stop [--timeout DUR]                  stop it (gracefully, then forcibly)\n"
      "\n"
      "options:\n"
      "  -e, --env KEY=VALUE|KEY   set an environment variable (KEY alone copies this shell's value)\n"
      "  -w, --workdir DIR         working directory (default: the image's)\n"
      "  -u, --user USER[:GROUP]   user to run as (default: the image's)\n"
      "  -i, --interactive         pass standard input to the command\n"
      "  -t, --tty                 run the command on a terminal\n"
      "      --timeout DUR         kill the command after DUR (e.g. 30s, 2m); exit status 124\n"
      "      --cpus N, --mem MiB   machine size (other than the sealed one means a cold boot)\n"
      "  -h, --help, --version\n"
      "\n"
      "The app's files: %1$s (this program) and %1$s.spore next to it (SPORE_BUNDLE overrides).\n"
      "Exit status: the command's own; 64-76 and 124-127 are the launcher's (see doc/exit-codes.md).\n",
      app.c_str());
}

}  // namespace spore::stub
