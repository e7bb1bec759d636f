#include "http/server.hpp"

#include <fmt/format.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/url/decode_view.hpp>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <optional>
#include <stdexcept>
#include <thread>
#include <unordered_set>

#include "core/config.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "http/request_io.hpp"

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using asio::awaitable;
using asio::ip::tcp;

namespace hsea::http {
namespace {

thread_local std::uint64_t t_requests_started = 0;

constexpr std::size_t kHeaderLimit = 16 * 1024;

struct Session;

struct Worker {
  Worker(int i, asio::io_context& context) : index(i), io(context) {}
  int index;
  // Frames of unfinished sessions are destroyed with io (after drain) and unregister
  // themselves from this set, so the Worker outlives io.
  std::unordered_set<Session*> sessions;
  asio::io_context& io;
  std::optional<tcp::acceptor> acceptor;
  DeadlineQueue deadlines;  // every request's deadline on this thread, one timer
};

struct Session {
  explicit Session(tcp::socket socket) : stream(std::move(socket)) {
    boost::system::error_code ec;
    auto endpoint = stream.socket().remote_endpoint(ec);
    if (!ec) remote_ip = endpoint.address().to_string();
  }
  beast::tcp_stream stream;
  std::string remote_ip;
  bool idle = true;  // waiting for the next request with nothing buffered
  std::string out;   // the response being written; reused, so it stops allocating once grown
};

std::string decode_path(std::string_view encoded) {
  try {
    boost::urls::decode_view decoded(encoded);
    return std::string(decoded.begin(), decoded.end());
  } catch (const std::exception&) {
    return std::string(encoded);
  }
}

Request to_request(const bhttp::request<bhttp::string_body>& in, const std::string& remote_ip,
                   bool trust_forwarded_for) {
  Request out;
  out.method = method_from_name(std::string_view(in.method_string()));
  out.target = std::string(in.target());
  auto q = out.target.find('?');
  out.path = decode_path(std::string_view(out.target).substr(0, q));
  if (q != std::string::npos) out.query = out.target.substr(q + 1);
  out.headers.reserve(16);
  for (const auto& field : in) {
    std::string name(field.name_string());
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    out.headers.push_back({std::move(name), std::string(field.value())});
  }
  out.body = in.body();
  out.remote_ip = remote_ip;
  if (trust_forwarded_for) {
    // The proxy appends the address it saw; anything before it the client may have forged.
    std::string_view forwarded = out.header("x-forwarded-for");
    if (!forwarded.empty()) {
      std::string_view last = forwarded.substr(forwarded.rfind(',') + 1);
      while (!last.empty() && last.front() == ' ') last.remove_prefix(1);
      while (!last.empty() && last.back() == ' ') last.remove_suffix(1);
      if (!last.empty() && last.size() <= 45) out.remote_ip = std::string(last);
    }
  }
  return out;
}

std::string_view trim_ows(std::string_view v) {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  return v;
}

// Why a request must be refused as soon as its header is read, before any body (the
// connection is then closed), or empty: the target's form, Host, and body framing. RFC 9112
// 6.1: a Transfer-Encoding the server does not decode must be refused; Beast decodes only one
// whose last coding is chunked and reads any other ("chunked, chunked", a folded "chunked
// chunked", "gzip") as no body at all, so the body would be served as the next request.
std::string_view header_problem(const bhttp::request<bhttp::string_body>& header) {
  // Only origin-form ("/path?query"): not absolute-form (another host), authority- or
  // asterisk-form, nor a path without its leading "/".
  if (!header.target().starts_with('/')) {
    return "The request target must be a path starting with \"/\".";
  }
  // RFC 9112 3.2: an HTTP/1.1 request has exactly one Host; none may have two.
  auto hosts = header.count(bhttp::field::host);
  if (hosts > 1 || (hosts == 0 && header.version() >= 11)) {
    return "An HTTP/1.1 request needs exactly one Host header.";
  }
  int encodings = 0;
  std::string_view encoding;
  for (const auto& field : header) {
    if (field.name() == bhttp::field::transfer_encoding) {
      ++encodings;
      encoding = trim_ows(std::string_view(field.value()));
    }
  }
  if (encodings > 0) {
    if (header.version() < 11) return "HTTP/1.0 requests cannot use Transfer-Encoding.";
    if (encodings > 1 || !beast::iequals(encoding, "chunked")) {
      return "Transfer-Encoding must be exactly \"chunked\".";
    }
    if (header.find(bhttp::field::content_length) != header.end()) {
      return "A request cannot have both Transfer-Encoding and Content-Length.";
    }
  }
  return {};
}

void append_decimal(std::string& out, std::size_t value) {
  char digits[20];
  char* end = digits + sizeof digits;
  char* p = end;
  do {
    *--p = static_cast<char>('0' + value % 10);
    value /= 10;
  } while (value != 0);
  out.append(p, end);
}

// A header name or value as written: CR and LF (which would end the header) become spaces.
void append_field(std::string& out, std::string_view text) {
  std::size_t at = out.size();
  out.append(text);
  for (std::size_t i = at; i < out.size(); ++i) {
    if (out[i] == '\r' || out[i] == '\n') out[i] = ' ';
  }
}

// The status line and header block, serialised once into `out` (the session's reused buffer),
// byte for byte what Beast wrote before: the handler's headers in order (several Set-Cookie
// included), then Connection as keep_alive() sets it, then Content-Length as prepare_payload()
// does (also for HEAD, which sends the GET's length without the body, and for 204: 0).
void write_head(std::string& out, const Response& in, unsigned version, bool keep_alive) {
  out.clear();
  out += version >= 11 ? "HTTP/1.1 " : "HTTP/1.0 ";
  append_decimal(out, static_cast<std::size_t>(in.status));
  out.push_back(' ');
  auto reason = bhttp::obsolete_reason(static_cast<bhttp::status>(in.status));
  out.append(reason.data(), reason.size());
  out += "\r\n";
  for (const Header& h : in.headers) {
    append_field(out, h.name);
    out += ": ";
    append_field(out, h.value);
    out += "\r\n";
  }
  if (version >= 11 && !keep_alive) out += "Connection: close\r\n";
  if (version < 11 && keep_alive) out += "Connection: keep-alive\r\n";
  out += "Content-Length: ";
  append_decimal(out, in.body.size());
  out += "\r\n\r\n";
}

// Bodies up to this size are copied behind the header block: one buffer, one send.
constexpr std::size_t kInlineBody = 16 * 1024;

}  // namespace

struct Server::Impl {
  explicit Impl(ServerOptions o) : parts(std::move(o)) {
    for (std::size_t i = 0; i < parts.io.size(); ++i) {
      workers.push_back(std::make_unique<Worker>(static_cast<int>(i), *parts.io[i]));
    }
  }

  ServerOptions parts;
  std::vector<std::unique_ptr<Worker>> workers;
  std::uint16_t bound_port = 0;
  std::atomic<bool> draining{false};
  std::atomic<int> active_sessions{0};

  awaitable<void> accept_loop(Worker& w) {
    using std::chrono::milliseconds;
    using Clock = std::chrono::steady_clock;
    // At HSEA_MAX_CONNECTIONS open connections (all threads together) the loop stops accepting
    // and new connections wait in the listen backlog; it looks again every kCapPoll. Out of
    // file descriptors (or kernel memory), accept fails at once, again and again: the loop
    // backs off from 50 ms, doubling up to 1 s, and logs at most one line per
    // kAcceptLogInterval with the number of failures since the previous line.
    constexpr milliseconds kCapPoll{25};
    constexpr milliseconds kFirstBackoff{50};
    constexpr milliseconds kMaxBackoff{1000};
    constexpr auto kAcceptLogInterval = std::chrono::seconds(10);
    const int cap = parts.config.max_connections;
    asio::steady_timer pause(w.io);
    milliseconds backoff{0};
    std::uint64_t failures = 0;  // accept failures not logged yet
    Clock::time_point next_failure_log = Clock::now(), next_cap_log = Clock::now();
    while (true) {
      if (cap > 0 && active_sessions.load() >= cap) {
        if (Clock::now() >= next_cap_log) {
          next_cap_log = Clock::now() + kAcceptLogInterval;
          log::warn("connection limit reached; waiting for connections to close",
                    {{"connections", active_sessions.load()}, {"max_connections", cap}});
        }
        pause.expires_after(kCapPoll);
        co_await pause.async_wait(asio::as_tuple(asio::use_awaitable));
        if (!w.acceptor->is_open()) co_return;
        continue;
      }
      auto [ec, socket] = co_await w.acceptor->async_accept(asio::as_tuple(asio::use_awaitable));
      if (ec) {
        if (ec == asio::error::operation_aborted || !w.acceptor->is_open()) co_return;
        namespace errc = boost::system::errc;
        bool out_of_resources = ec == errc::too_many_files_open ||            // EMFILE
                                ec == errc::too_many_files_open_in_system ||  // ENFILE
                                ec == errc::no_buffer_space || ec == errc::not_enough_memory;
        if (out_of_resources) {
          backoff = backoff.count() == 0 ? kFirstBackoff : std::min(backoff * 2, kMaxBackoff);
        }
        ++failures;
        if (Clock::now() >= next_failure_log) {
          next_failure_log = Clock::now() + kAcceptLogInterval;
          log::warn("accept failed", {{"error", ec.message()},
                                      {"failures", failures},
                                      {"connections", active_sessions.load()},
                                      {"retry_ms", out_of_resources ? backoff.count() : 0}});
          failures = 0;
        }
        if (out_of_resources) {
          // Keep serving the connections we have; one of them closing frees a descriptor.
          pause.expires_after(backoff);
          co_await pause.async_wait(asio::as_tuple(asio::use_awaitable));
          if (!w.acceptor->is_open()) co_return;
        }
        continue;
      }
      backoff = milliseconds(0);
      socket.set_option(tcp::no_delay(true));
      active_sessions.fetch_add(1);
      // The session coroutine's cancellation parent is this signal (its deadline steps emit
      // it); the completion handler owns it, so it lives as long as the coroutine.
      auto io = std::make_unique<RequestIo>();
      io->deadlines = &w.deadlines;
      RequestIo* request_io = io.get();
      asio::co_spawn(w.io, session(w, std::move(socket), request_io),
                     asio::bind_cancellation_slot(request_io->cancel.slot(),
                                                  [this, io = std::move(io)](std::exception_ptr e) {
                                                    active_sessions.fetch_sub(1);
                                                    log::escaped(e, "connection");
                                                  }));
    }
  }

  // Writes the answer: the header block (and a small body) from the session's reused buffer.
  // The socket is non-blocking, so the first attempt is a plain send; only what the kernel did
  // not take at once (a slow reader, a large body) is written asynchronously, under the read
  // timeout.
  awaitable<void> send(Session& s, Response response, unsigned version, bool keep_alive,
                       bool head) {
    write_head(s.out, response, version, keep_alive);
    std::string_view body = head ? std::string_view() : std::string_view(response.body);
    if (!body.empty() && body.size() <= kInlineBody) {
      s.out.append(body);
      body = {};
    }
    std::array<asio::const_buffer, 2> buffers{asio::buffer(s.out), asio::buffer(body)};
    boost::system::error_code ec;
    std::size_t sent = s.stream.socket().write_some(buffers, ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) {
      sent = 0;
    } else if (ec) {
      throw boost::system::system_error(ec);
    }
    if (sent == s.out.size() + body.size()) co_return;
    if (sent >= s.out.size()) {
      buffers = {asio::buffer(body.substr(sent - s.out.size())), asio::const_buffer()};
    } else {
      buffers[0] = asio::buffer(s.out) + sent;
    }
    s.stream.expires_after(std::chrono::seconds(parts.config.read_timeout_seconds));
    co_await asio::async_write(s.stream, buffers, asio::use_awaitable);
  }

  // Answers a request refused while reading it, then the connection is closed.
  awaitable<void> refuse(Worker& w, Session& s, core::ErrorCode code, std::string detail,
                         const bhttp::request_parser<bhttp::string_body>& parser) {
    Request request;
    if (parser.is_header_done()) {
      request.method = method_from_name(std::string_view(parser.get().method_string()));
      request.target = std::string(parser.get().target());
      request.path = request.target.substr(0, request.target.find('?'));
    }
    core::ApiError error(code, std::move(detail));
    RequestContext ctx(request);
    ctx.rejection = &error;
    Response response = co_await parts.chain.refuse(ctx);
    boost::system::error_code ignored;
    try {
      co_await send(s, std::move(response), 11, false, false);
    } catch (const std::exception&) {
    }
    s.stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  }

  awaitable<void> session(Worker& w, tcp::socket socket, RequestIo* io) {
    Session s(std::move(socket));
    w.sessions.insert(&s);
    {
      // For send(): a small answer goes out in one plain send when the kernel takes it.
      boost::system::error_code ignored;
      s.stream.socket().non_blocking(true, ignored);
    }
    struct Unregister {
      Worker& w;
      Session* s;
      ~Unregister() { w.sessions.erase(s); }
    } unregister{w, &s};

    beast::flat_buffer buffer;
    bool first = true;
    while (!draining.load(std::memory_order_relaxed)) {
      bhttp::request_parser<bhttp::string_body> parser;
      parser.header_limit(kHeaderLimit);
      parser.body_limit(parts.config.max_body_bytes);
      s.idle = buffer.size() == 0;
      s.stream.expires_after(std::chrono::seconds(first ? parts.config.read_timeout_seconds
                                                        : parts.config.idle_timeout_seconds));
      first = false;
      auto [ec, n] = co_await bhttp::async_read_header(s.stream, buffer, parser,
                                                       asio::as_tuple(asio::use_awaitable));
      s.idle = false;
      if (!ec) {
        if (std::string_view problem = header_problem(parser.get()); !problem.empty()) {
          co_await refuse(w, s, core::ErrorCode::kBadRequest, std::string(problem), parser);
          break;
        }
      }
      if (!ec && parser.get()[bhttp::field::expect] == "100-continue" && !parser.is_done()) {
        bhttp::response<bhttp::empty_body> cont{bhttp::status::continue_, 11};
        co_await bhttp::async_write(s.stream, cont, asio::use_awaitable);
      }
      if (!ec && !parser.is_done()) {
        s.stream.expires_after(std::chrono::seconds(parts.config.read_timeout_seconds));
        std::tie(ec, n) = co_await bhttp::async_read(s.stream, buffer, parser,
                                                     asio::as_tuple(asio::use_awaitable));
      }
      if (ec == bhttp::error::end_of_stream || ec == asio::error::eof ||
          ec == asio::error::connection_reset || ec == beast::error::timeout ||
          ec == asio::error::operation_aborted) {
        break;
      }
      if (ec == bhttp::error::header_limit) {
        co_await refuse(w, s, core::ErrorCode::kHeadersTooLarge,
                        "Request headers are larger than 16 KiB.", parser);
        break;
      }
      if (ec == bhttp::error::body_limit) {
        co_await refuse(
            w, s, core::ErrorCode::kPayloadTooLarge,
            fmt::format("Request body is larger than {} bytes.", parts.config.max_body_bytes),
            parser);
        break;
      }
      if (ec) {
        co_await refuse(w, s, core::ErrorCode::kBadRequest, "Malformed HTTP request.", parser);
        break;
      }

      const auto& message = parser.get();
      Request request = to_request(message, s.remote_ip, parts.config.trust_forwarded_for);
      bool head = request.method == Method::kHead;
      RequestContext ctx(request);
      ctx.io = io;
      // Routed on the path as received: the router splits it before decoding each segment.
      std::string_view target(request.target);
      ctx.match = parts.router.match(request.method, target.substr(0, target.find('?')));
      ++t_requests_started;
      Response response = co_await parts.chain.run(ctx);
      bool keep_alive = message.keep_alive() && !draining.load(std::memory_order_relaxed);
      // The status and body size outlive the send, for the after-response hooks.
      Response summary;
      summary.status = response.status;
      summary.problem_code = response.problem_code;
      bool sent = true;
      try {
        co_await send(s, std::move(response), message.version(), keep_alive, head);
      } catch (const boost::system::system_error& e) {
        log::debug("client went away before the response was sent", {{"error", e.what()}});
        sent = false;
      }
      parts.chain.after_response(ctx, summary);
      if (!sent || !keep_alive) break;
    }
    boost::system::error_code ignored;
    s.stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
  }

  // Stops accepting and closes connections that are waiting for a request; busy ones finish
  // their request and close themselves.
  static void stop_accepting(Worker& w) {
    boost::system::error_code ignored;
    if (w.acceptor) w.acceptor->close(ignored);
    for (Session* s : w.sessions) {
      if (s->idle) s->stream.socket().cancel(ignored);
    }
  }
};

Server::Server(ServerOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
Server::~Server() = default;

std::uint16_t Server::port() const { return impl_->bound_port; }

void Server::bind() {
  const core::Config& config = impl_->parts.config;
  boost::system::error_code ec;
  auto address = asio::ip::make_address(config.http_host, ec);
  if (ec) throw std::runtime_error("HSEA_HTTP_HOST: not an IP address: " + config.http_host);
  std::uint16_t port = config.http_port;
  for (auto& w : impl_->workers) {
    tcp::endpoint endpoint(address, port);
    w->acceptor.emplace(w->io);
    w->acceptor->open(endpoint.protocol());
    w->acceptor->set_option(tcp::acceptor::reuse_address(true));
    int one = 1;
    ::setsockopt(w->acceptor->native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    w->acceptor->bind(endpoint, ec);
    if (ec) {
      throw std::runtime_error(
          fmt::format("cannot listen on {}:{}: {}", config.http_host, port, ec.message()));
    }
    w->acceptor->listen(asio::socket_base::max_listen_connections);
    port = w->acceptor->local_endpoint().port();  // port 0: the rest share the chosen port
  }
  impl_->bound_port = port;
}

void Server::start() {
  for (auto& w : impl_->workers) {
    asio::co_spawn(w->io, w->deadlines.watch(),
                   [](std::exception_ptr e) { log::escaped(e, "request deadlines"); });
    asio::co_spawn(w->io, impl_->accept_loop(*w),
                   [](std::exception_ptr e) { log::escaped(e, "accept loop"); });
  }
}

void Server::drain(std::chrono::seconds grace) {
  Impl& impl = *impl_;
  impl.draining = true;
  for (auto& w : impl.workers) {
    asio::post(w->io, [w = w.get()] { Impl::stop_accepting(*w); });
  }
  auto deadline = std::chrono::steady_clock::now() + grace;
  while (impl.active_sessions.load() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (int left = impl.active_sessions.load(); left > 0) {
    log::warn("grace period over; closing connections", {{"connections", left}});
    for (auto& w : impl.workers) {
      asio::post(w->io, [w = w.get()] {
        boost::system::error_code ignored;
        for (Session* s : w->sessions) s->stream.socket().close(ignored);
      });
    }
    auto hard_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
    while (impl.active_sessions.load() > 0 && std::chrono::steady_clock::now() < hard_deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  // Acceptors are destroyed on their own threads, while their io_contexts still run.
  auto closed = std::make_shared<std::atomic<int>>(0);
  for (auto& w : impl.workers) {
    asio::post(w->io, [w = w.get(), closed] {
      w->acceptor.reset();
      closed->fetch_add(1);
    });
  }
  auto limit = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (closed->load() < static_cast<int>(impl.workers.size()) &&
         std::chrono::steady_clock::now() < limit) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

std::uint64_t requests_started_on_this_thread() { return t_requests_started; }

}  // namespace hsea::http
