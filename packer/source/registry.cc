#include "packer/source/registry.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "base/fd.h"
#include "base/files.h"
#include "base/log.h"
#include "base/sha256.h"
#include "base/strings.h"
#include "packer/source/manifest.h"

namespace spore::pack {
namespace {

using json = nlohmann::json;

constexpr size_t kMaxManifestBytes = 4 << 20;
constexpr size_t kMaxConfigBytes = 32 << 20;
constexpr size_t kMaxTokenBytes = 1 << 20;
constexpr size_t kMaxErrorBodyBytes = 64 << 10;
constexpr int kAttempts = 3;  // for blobs, on network errors and 5xx
// Tokens and manifests are small: besides the stall timeout, one of them
// taking this many stall timeouts in all is a registry trickling bytes.
constexpr int kSmallRequestStalls = 5;

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n'))
    s.remove_suffix(1);
  return std::string(s);
}

// What one HTTP exchange produced. The body of an error response is kept
// (for the registry's error message); a success body goes to the sink.
struct Response {
  long status = 0;
  std::string content_type;
  std::string docker_digest;
  std::string www_authenticate;
  std::string error_body;
  std::string url;  // after redirects
};

// Returns false to abort the transfer.
using Sink = std::function<bool(const char* data, size_t len)>;

struct Transfer {
  CURL* curl = nullptr;
  Response* resp = nullptr;
  Sink* sink = nullptr;
  bool sink_failed = false;
  // The stall watch: when a byte (header or body, either way) last moved.
  std::chrono::steady_clock::time_point last_bytes = std::chrono::steady_clock::now();
  curl_off_t seen_down = 0, seen_up = 0;
  std::chrono::seconds stall_timeout{60};
  bool stalled = false;
};

// libcurl calls this about once a second even when nothing moves: a
// request that has received nothing for the stall timeout is aborted.
int on_progress(void* user, curl_off_t, curl_off_t down, curl_off_t, curl_off_t up) {
  auto* t = static_cast<Transfer*>(user);
  auto now = std::chrono::steady_clock::now();
  if (down != t->seen_down || up != t->seen_up) {
    t->seen_down = down;
    t->seen_up = up;
    t->last_bytes = now;
    return 0;
  }
  if (now - t->last_bytes < t->stall_timeout) return 0;
  t->stalled = true;
  return 1;
}

size_t on_header(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  t->last_bytes = std::chrono::steady_clock::now();
  std::string_view line(data, size * n);
  // Each response in a redirect chain starts with a status line; keep only
  // the last response's headers.
  if (starts_with(line, "HTTP/")) {
    Response fresh;
    fresh.error_body = std::move(t->resp->error_body);
    *t->resp = std::move(fresh);
    return size * n;
  }
  size_t colon = line.find(':');
  if (colon == std::string_view::npos) return size * n;
  std::string key = lower(line.substr(0, colon));
  std::string value = trim(line.substr(colon + 1));
  if (key == "content-type")
    t->resp->content_type = value;
  else if (key == "docker-content-digest")
    t->resp->docker_digest = value;
  else if (key == "www-authenticate") {
    // Several challenges may be offered; Bearer is the one we can answer.
    if (t->resp->www_authenticate.empty() || starts_with(lower(value), "bearer")) t->resp->www_authenticate = value;
  }
  return size * n;
}

size_t on_body(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  size_t len = size * n;
  long status = 0;
  curl_easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &status);
  if (status >= 300) {
    if (t->resp->error_body.size() < kMaxErrorBodyBytes)
      t->resp->error_body.append(data, std::min(len, kMaxErrorBodyBytes));
    return len;
  }
  if (t->sink && !(*t->sink)(data, len)) {
    t->sink_failed = true;
    return 0;
  }
  return len;
}

// The registry's own explanation, from {"errors":[{"code":..,"message":..}]}.
std::string registry_message(const std::string& body) {
  json j = json::parse(body, nullptr, false);
  std::string out;
  if (j.is_object() && j.contains("errors") && j["errors"].is_array()) {
    for (const auto& e : j["errors"]) {
      if (!e.is_object()) continue;
      std::string code = e.value("code", "");
      std::string msg = e.value("message", "");
      out += (out.empty() ? "" : "; ") + code + (code.empty() || msg.empty() ? "" : ": ") + msg;
    }
  }
  if (out.empty() && !body.empty() && body.size() < 200 && body.find('<') == std::string::npos) out = trim(body);
  return out;
}

class Client {
 public:
  Client(Reference ref, const SourceOptions& opts) : ref_(std::move(ref)), opts_(opts) {
    static std::once_flag once;
    std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
    curl_ = curl_easy_init();
    base_ = std::string(opts.insecure ? "http://" : "https://") + ref_.registry_host() + "/v2/" + ref_.repository;
  }
  ~Client() {
    if (curl_) curl_easy_cleanup(curl_);
  }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  struct Fetched {
    std::string body, content_type, digest;
  };

  // A manifest by tag or digest, verified: by its digest when asked by
  // digest, and against the registry's Docker-Content-Digest otherwise.
  Result<Fetched> manifest(const std::string& tag_or_digest) {
    Fetched f;
    Sink sink = [&](const char* d, size_t n) {
      if (f.body.size() + n > kMaxManifestBytes) return false;
      f.body.append(d, n);
      return true;
    };
    std::string url = base_ + "/manifests/" + tag_or_digest;
    SPORE_ASSIGN_OR_RETURN(Response r, request(url, media::kManifestAccept, &sink, "manifest"));
    if (r.status == 404)
      return make_error(ErrorKind::kNotFound, describe() + ": no such image (" + tag_or_digest + " not found in " +
                                                  ref_.repository + " on " + ref_.domain + ")" + detail(r));
    SPORE_TRY(check_status(r, url));
    f.content_type = r.content_type;
    f.digest = sha256_digest_of(f.body);
    if (is_sha256_digest(tag_or_digest) && f.digest != tag_or_digest)
      return make_error(ErrorKind::kCorrupt, url + ": manifest does not match its digest (got " + f.digest + ")");
    if (is_sha256_digest(r.docker_digest) && r.docker_digest != f.digest)
      return make_error(ErrorKind::kCorrupt, url + ": manifest does not match the registry's digest " +
                                                 r.docker_digest + " (got " + f.digest + ")");
    return f;
  }

  // A blob in the cache, downloading and verifying it if it is not there yet.
  Result<std::string> blob(const Descriptor& d, const std::string& label) {
    // The cache is ours alone: a directory someone else can write to could
    // have anything swapped in. Created 0700; nothing shared is used.
    std::string dir = opts_.blob_cache + "/sha256";
    SPORE_TRY(make_private_dir(opts_.blob_cache));
    SPORE_TRY(make_private_dir(dir));
    std::string path = dir + "/" + digest_hex_part(d.digest);
    Progress& progress = Progress::get();
    struct stat st;
    if (::lstat(path.c_str(), &st) == 0) {
      // Only verified content is ever renamed into place, but a file can be
      // damaged or replaced since: it is hashed again before every use, and
      // anything else than the right bytes is fetched again.
      if (S_ISREG(st.st_mode) && verify_file(path, d.digest, d.size).ok()) {
        if (!label.empty()) {
          progress.start(label, d.size);
          progress.advance(d.size);
          progress.finish("cached");
        }
        return path;
      }
      LOG_WARN("%s: cached blob %s is damaged; fetching it again", describe().c_str(), d.digest.c_str());
      if (::unlink(path.c_str()) < 0 && errno != ENOENT) return errno_error("removing the damaged " + path);
    }
    std::string url = base_ + "/blobs/" + d.digest;
    Error last = make_error(ErrorKind::kInternal, "no attempt");
    for (int attempt = 1; attempt <= kAttempts; attempt++) {
      if (!label.empty()) progress.start(label, d.size);
      auto r = download(url, d, path, label);
      if (r.ok()) {
        if (!label.empty()) progress.finish("pulled");
        return path;
      }
      if (!label.empty()) progress.finish("failed");
      last = std::move(r).error();
      // Only transient failures (network, 5xx) are worth another try.
      if (last.kind != ErrorKind::kUnavailable || attempt == kAttempts) break;
      LOG_WARN("%s; retrying", last.message.c_str());
      std::this_thread::sleep_for(std::chrono::seconds(attempt));
    }
    return last;
  }

  std::string describe() const { return ref_.str(); }

 private:
  static std::string detail(const Response& r) {
    std::string m = registry_message(r.error_body);
    return m.empty() ? "" : ": " + m;
  }

  Status check_status(const Response& r, const std::string& url) {
    if (r.status >= 200 && r.status < 300) return ok_status();
    if (r.status == 401 || r.status == 403)
      return make_error(ErrorKind::kUnavailable, describe() +
                                                     ": access denied by the registry (the repository does not "
                                                     "exist or needs a login; spore-pack pulls anonymously)" +
                                                     detail(r));
    if (r.status == 404) return make_error(ErrorKind::kNotFound, url + ": not found" + detail(r));
    // 5xx and 429 are the registry's trouble, maybe passing: kUnavailable is retried.
    ErrorKind kind = r.status >= 500 || r.status == 429 ? ErrorKind::kUnavailable : ErrorKind::kProtocol;
    return make_error(kind, url + ": HTTP " + std::to_string(r.status) + detail(r));
  }

  Result<std::string> fetch_token(const AuthChallenge& c) {
    std::string url = c.realm;
    std::string scope = c.scope.empty() ? "repository:" + ref_.repository + ":pull" : c.scope;
    auto escape = [&](const std::string& s) {
      char* e = curl_easy_escape(curl_, s.c_str(), static_cast<int>(s.size()));
      std::string out = e ? e : "";
      curl_free(e);
      return out;
    };
    url += url.find('?') == std::string::npos ? "?" : "&";
    if (!c.service.empty()) url += "service=" + escape(c.service) + "&";
    url += "scope=" + escape(scope);
    std::string body;
    Sink sink = [&](const char* d, size_t n) {
      if (body.size() + n > kMaxTokenBytes) return false;
      body.append(d, n);
      return true;
    };
    SPORE_ASSIGN_OR_RETURN(Response r, perform(url, "application/json", "", &sink, "token"));
    if (r.status == 401 || r.status == 403)
      return make_error(ErrorKind::kUnavailable,
                        describe() + ": the registry refused an anonymous token (" + url + ")" + detail(r));
    SPORE_TRY(check_status(r, url));
    json j = json::parse(body, nullptr, false);
    std::string token;
    if (j.is_object()) {
      if (j.contains("token") && j["token"].is_string())
        token = j["token"].get<std::string>();
      else if (j.contains("access_token") && j["access_token"].is_string())
        token = j["access_token"].get<std::string>();
    }
    if (token.empty()) return make_error(ErrorKind::kProtocol, url + ": no token in the response");
    return token;
  }

  // One GET with the registry's auth dance: a 401 with a Bearer challenge
  // gets an anonymous token and one more try.
  Result<Response> request(const std::string& url, const char* accept, Sink* sink, const char* what) {
    for (int round = 0;; round++) {
      std::string auth = token_.empty() ? "" : "Authorization: Bearer " + token_;
      SPORE_ASSIGN_OR_RETURN(Response r, perform(url, accept, auth, sink, what));
      if (r.status != 401 || round > 0) return r;
      auto challenge = parse_www_authenticate(r.www_authenticate);
      if (!challenge || challenge->scheme != "bearer" || challenge->realm.empty()) {
        if (challenge && challenge->scheme == "basic")
          return make_error(ErrorKind::kUnavailable,
                            describe() + ": the registry wants a login (Basic auth); spore-pack pulls anonymously");
        return r;
      }
      SPORE_ASSIGN_OR_RETURN(token_, fetch_token(*challenge));
    }
  }

  Result<Response> perform(const std::string& url, const char* accept, const std::string& auth, Sink* sink,
                           const char* what) {
    if (!curl_) return make_error(ErrorKind::kInternal, "curl_easy_init failed");
    curl_easy_reset(curl_);
    Response resp;
    Transfer t;
    t.curl = curl_;
    t.resp = &resp;
    t.sink = sink;
    t.stall_timeout = std::chrono::seconds(std::max(1, opts_.stall_timeout_s));
    char errbuf[CURL_ERROR_SIZE] = {};
    curl_slist* headers = nullptr;
    headers = curl_slist_append(headers, (std::string("Accept: ") + accept).c_str());
    if (!auth.empty()) headers = curl_slist_append(headers, auth.c_str());
    std::unique_ptr<curl_slist, void (*)(curl_slist*)> headers_guard(headers, curl_slist_free_all);
    const char* protocols = opts_.insecure ? "http,https" : "https";
    curl_easy_setopt(curl_, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl_, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl_, CURLOPT_PROTOCOLS_STR, protocols);
    curl_easy_setopt(curl_, CURLOPT_REDIR_PROTOCOLS_STR, protocols);
    // Blobs are usually redirected to a CDN. libcurl does not forward our
    // Authorization header to another host.
    curl_easy_setopt(curl_, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(curl_, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(curl_, CURLOPT_USERAGENT, "spore-pack/" SPORE_VERSION);
    curl_easy_setopt(curl_, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl_, CURLOPT_CONNECTTIMEOUT, 30L);
    // A request that receives nothing for the stall timeout is dead,
    // whatever it waits for (connection, token, manifest, blob).
    curl_easy_setopt(curl_, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(curl_, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(curl_, CURLOPT_XFERINFODATA, &t);
    const bool small = std::string_view(what) != "blob";
    if (small) curl_easy_setopt(curl_, CURLOPT_TIMEOUT, static_cast<long>(t.stall_timeout.count()) * kSmallRequestStalls);
    curl_easy_setopt(curl_, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(curl_, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(curl_, CURLOPT_HEADERDATA, &t);
    curl_easy_setopt(curl_, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(curl_, CURLOPT_WRITEDATA, &t);
    if (!no_proxy_.empty()) curl_easy_setopt(curl_, CURLOPT_NOPROXY, no_proxy_.c_str());
    CURLcode rc = curl_easy_perform(curl_);
    char* effective = nullptr;
    curl_easy_getinfo(curl_, CURLINFO_EFFECTIVE_URL, &effective);
    resp.url = effective ? effective : url;
    if (t.sink_failed) return make_error(ErrorKind::kCorrupt, resp.url + ": " + what + " larger than expected");
    if (t.stalled)
      return make_error(ErrorKind::kUnavailable,
                        strfmt("registry %s: fetching %s %s: nothing received for %lld s (spore-pack --stall-timeout)",
                               ref_.domain.c_str(), what, resp.url.c_str(),
                               static_cast<long long>(t.stall_timeout.count())));
    const long long total_s = static_cast<long long>(t.stall_timeout.count()) * kSmallRequestStalls;
    curl_off_t took_us = 0;
    curl_easy_getinfo(curl_, CURLINFO_TOTAL_TIME_T, &took_us);
    if (rc == CURLE_OPERATION_TIMEDOUT && small && took_us >= (total_s - 1) * 1000000)
      return make_error(ErrorKind::kUnavailable,
                        strfmt("registry %s: fetching %s %s: not done after %lld s (the registry is too slow)",
                               ref_.domain.c_str(), what, resp.url.c_str(), total_s));
    if (rc != CURLE_OK) {
      std::string msg = errbuf[0] ? trim(errbuf) : curl_easy_strerror(rc);
      std::string hint;
      if (!opts_.insecure && (rc == CURLE_SSL_CONNECT_ERROR || rc == CURLE_PEER_FAILED_VERIFICATION))
        hint = " (a plain-HTTP registry needs --insecure)";
      return make_error(ErrorKind::kUnavailable, std::string("fetching ") + what + " " + resp.url + ": " + msg + hint);
    }
    curl_easy_getinfo(curl_, CURLINFO_RESPONSE_CODE, &resp.status);
    return resp;
  }

  // Streams the blob into a temporary file next to its final place, hashing
  // as it goes; renamed into the cache only once size and digest check out.
  Status download(const std::string& url, const Descriptor& d, const std::string& path, const std::string& label) {
    std::string tmp = path + ".tmp-XXXXXX";
    int fd = ::mkostemp(tmp.data(), O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return errno_error("creating a file in " + opts_.blob_cache);
    UniqueFd file(fd);
    struct Unlink {
      std::string path;
      ~Unlink() {
        if (!path.empty()) ::unlink(path.c_str());
      }
    } cleanup{tmp};
    Sha256 hash;
    uint64_t got = 0;
    Status write_error;
    Progress& progress = Progress::get();
    Sink sink = [&](const char* data, size_t n) {
      if (got + n > d.size) return false;
      auto w = write_all(file.get(), data, n);
      if (!w.ok()) {
        write_error = std::move(w);
        return false;
      }
      hash.update(data, n);
      got += n;
      if (!label.empty()) progress.advance(n);
      return true;
    };
    auto r = request(url, "*/*", &sink, "blob");
    if (!write_error.ok()) return std::move(write_error).error().wrap("writing " + tmp);
    if (!r.ok()) return std::move(r).error();
    if (r->status == 404)
      return make_error(ErrorKind::kNotFound,
                        describe() + ": blob " + d.digest + " is missing from the registry" + detail(*r));
    SPORE_TRY(check_status(*r, url));
    if (got != d.size)
      return make_error(ErrorKind::kCorrupt,
                        url + ": got " + std::to_string(got) + " bytes, the manifest says " + std::to_string(d.size));
    std::string have = "sha256:" + digest_hex(hash.finish());
    if (have != d.digest)
      return make_error(ErrorKind::kCorrupt, url + ": content does not match its digest (got " + have + ")");
    if (::fsync(file.get()) < 0) return errno_error("fsync " + tmp);
    if (::rename(tmp.c_str(), path.c_str()) < 0) return errno_error("renaming " + tmp);
    cleanup.path.clear();
    return ok_status();
  }

  static std::string default_no_proxy() {
    // A registry on this machine is never reached through a proxy.
    const char* env = std::getenv("no_proxy");
    if (!env) env = std::getenv("NO_PROXY");
    std::string s = env ? env : "";
    if (!std::getenv("http_proxy") && !std::getenv("https_proxy") && !std::getenv("HTTP_PROXY") &&
        !std::getenv("HTTPS_PROXY") && !std::getenv("ALL_PROXY") && !std::getenv("all_proxy"))
      return "";
    return s + (s.empty() ? "" : ",") + "localhost,127.0.0.1,::1";
  }

  Reference ref_;
  const SourceOptions& opts_;
  CURL* curl_ = nullptr;
  std::string base_;
  std::string token_;
  std::string no_proxy_ = default_no_proxy();
};

std::string short_digest(const std::string& digest) { return digest.substr(0, 7 + 12); }

}  // namespace

std::optional<AuthChallenge> parse_www_authenticate(std::string_view h) {
  std::string_view s = h;
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  size_t sp = s.find(' ');
  AuthChallenge c;
  c.scheme = lower(s.substr(0, sp));
  if (c.scheme.empty()) return std::nullopt;
  if (sp == std::string_view::npos) return c;
  s.remove_prefix(sp + 1);
  // key=value or key="quoted, with \"escapes\"", separated by commas.
  while (!s.empty()) {
    while (!s.empty() && (s.front() == ' ' || s.front() == ',')) s.remove_prefix(1);
    size_t eq = s.find('=');
    if (eq == std::string_view::npos) break;
    std::string key = lower(trim(s.substr(0, eq)));
    s.remove_prefix(eq + 1);
    std::string value;
    if (!s.empty() && s.front() == '"') {
      s.remove_prefix(1);
      while (!s.empty() && s.front() != '"') {
        if (s.front() == '\\' && s.size() > 1) s.remove_prefix(1);
        value += s.front();
        s.remove_prefix(1);
      }
      if (!s.empty()) s.remove_prefix(1);
    } else {
      size_t comma = s.find(',');
      value = trim(s.substr(0, comma));
      s.remove_prefix(comma == std::string_view::npos ? s.size() : comma);
    }
    if (key == "realm")
      c.realm = value;
    else if (key == "service")
      c.service = value;
    else if (key == "scope")
      c.scope = value;
  }
  return c;
}

Result<Image> pull_image(const Reference& ref, const std::string& original, const SourceOptions& opts) {
  SPORE_ASSIGN_OR_RETURN(Platform want, parse_platform(opts.platform));
  if (opts.blob_cache.empty()) return make_error(ErrorKind::kInternal, "pulling needs a blob cache directory");
  Client client(ref, opts);
  Progress& progress = Progress::get();
  progress.note("pulling " + ref.str() + " for " + want.str());

  SPORE_ASSIGN_OR_RETURN(Client::Fetched top, client.manifest(ref.manifest_ref()));
  Image image;
  image.reference = original;
  image.digest = top.digest;
  SPORE_ASSIGN_OR_RETURN(Manifest m, parse_manifest(top.body, top.content_type));
  // An index names one manifest per platform; an index of indexes is not
  // something registries serve, so one level is all we follow.
  if (m.is_index) {
    SPORE_ASSIGN_OR_RETURN(Descriptor d, select_platform(m, want, ref.str()));
    SPORE_ASSIGN_OR_RETURN(Client::Fetched sub, client.manifest(d.digest));
    SPORE_ASSIGN_OR_RETURN(m, parse_manifest(sub.body, sub.content_type.empty() ? d.media_type : sub.content_type));
    if (m.is_index) return make_error(ErrorKind::kCorrupt, ref.str() + ": an index inside an index is not supported");
  }
  if (!m.config.media_type.empty() && m.config.media_type != media::kOciConfig &&
      m.config.media_type != media::kDockerConfig)
    return make_error(ErrorKind::kCorrupt,
                      ref.str() + " is not a container image (its config is \"" + m.config.media_type + "\")");
  if (m.config.size > kMaxConfigBytes) return make_error(ErrorKind::kCorrupt, ref.str() + ": image config too large");

  SPORE_ASSIGN_OR_RETURN(std::string config_path, client.blob(m.config, ""));
  SPORE_ASSIGN_OR_RETURN(std::string config_text, read_file(config_path, kMaxConfigBytes));
  std::vector<std::string> diff_ids;
  auto config = parse_image_config(config_text, &diff_ids);
  if (!config.ok()) return std::move(config).error().wrap(ref.str());
  image.config = std::move(*config);
  SPORE_TRY(check_config_platform(image.config, want, ref.str()));
  if (!diff_ids.empty() && diff_ids.size() != m.layers.size())
    return make_error(ErrorKind::kCorrupt, strfmt("%s: the config lists %zu layers, the manifest %zu",
                                                  ref.str().c_str(), diff_ids.size(), m.layers.size()));

  uint64_t total = 0;
  for (size_t i = 0; i < m.layers.size(); i++) {
    const Descriptor& d = m.layers[i];
    SPORE_TRY(check_layer_media_type(d));
    std::string label = strfmt("layer %zu/%zu %s", i + 1, m.layers.size(), short_digest(d.digest).c_str());
    SPORE_ASSIGN_OR_RETURN(std::string path, client.blob(d, label));
    image.layers.push_back(LayerBlob{path, d.media_type, d.digest, d.size, layer_diff_id(diff_ids, i, d.digest)});
    total += d.size;
  }
  progress.note(strfmt("%s: %zu layers, %s", ref.str().c_str(), image.layers.size(), human_bytes(total).c_str()));
  return image;
}

}  // namespace spore::pack
