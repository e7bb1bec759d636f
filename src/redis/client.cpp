#include "redis/client.hpp"

#include <hiredis/hiredis.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/system/system_error.hpp>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <deque>
#include <exception>
#include <new>
#include <string_view>
#include <utility>

#include "core/log.hpp"

namespace hsea::redis {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using std::chrono::milliseconds;

constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);
constexpr milliseconds kBackoffMin{100};
constexpr milliseconds kBackoffMax{2000};
// Connecting (resolve, TCP connect, AUTH, SELECT) gets at least this long, even when the
// per-command timeout is shorter.
constexpr milliseconds kMinConnectTimeout{1000};
constexpr std::size_t kReadChunk = 16 * 1024;
// Unparsed bytes the reader may hold for one incomplete reply before the connection is dropped.
constexpr std::size_t kMaxBufferedBytes = std::size_t{64} << 20;

// ---- RESP encoding and hiredis replies ------------------------------------------------------

void encode_command(std::string& out, const std::vector<std::string>& args) {
  out += '*';
  out += std::to_string(args.size());
  out += "\r\n";
  for (const auto& arg : args) {
    out += '$';
    out += std::to_string(arg.size());
    out += "\r\n";
    out += arg;
    out += "\r\n";
  }
}

Reply convert(const redisReply& r) {
  Reply out;
  switch (r.type) {
    case REDIS_REPLY_STRING:
      out.type = Reply::Type::kString;
      out.str.assign(r.str, r.len);
      break;
    case REDIS_REPLY_STATUS:
      out.type = Reply::Type::kStatus;
      out.str.assign(r.str, r.len);
      break;
    case REDIS_REPLY_ERROR:
      out.type = Reply::Type::kError;
      out.str.assign(r.str, r.len);
      break;
    case REDIS_REPLY_INTEGER:
      out.type = Reply::Type::kInteger;
      out.integer = r.integer;
      break;
    case REDIS_REPLY_ARRAY:
      out.type = Reply::Type::kArray;
      out.elements.reserve(r.elements);
      for (std::size_t i = 0; i < r.elements; ++i) out.elements.push_back(convert(*r.element[i]));
      break;
    default:
      out.type = Reply::Type::kNil;
      break;
  }
  return out;
}

struct ReaderDeleter {
  void operator()(redisReader* r) const { redisReaderFree(r); }
};
struct ReplyDeleter {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};

// ---- Per-connection state -------------------------------------------------------------------

// One waiting caller. The reader pops slots strictly in FIFO order; a slot whose caller left
// (cancelled or past its deadline) is popped all the same and its reply dropped.
struct Pending {
  explicit Pending(const asio::any_io_executor& ex) : signal(ex) {}
  asio::steady_timer signal;  // expires at the deadline; cancelled when the outcome is known
  Reply reply;
  bool done = false;       // reply or failure delivered
  bool failed = false;     // connection lost before the reply arrived
  bool abandoned = false;  // the caller is gone; drop the reply
};

// Marks the slot abandoned when the waiting coroutine leaves without an outcome, whatever
// the reason (deadline, cancellation, frame destroyed).
struct AbandonOnExit {
  Pending& pending;
  ~AbandonOnExit() {
    if (!pending.done) pending.abandoned = true;
  }
};

// One TCP connection. A new one is made for every (re)connect, so a stale reader or writer
// coroutine can never touch the next connection's socket, buffer or queue.
struct Connection {
  explicit Connection(asio::io_context& io)
      : socket(io), write_signal(io), reader(redisReaderCreate()) {
    if (!reader) throw std::bad_alloc();
  }
  tcp::socket socket;
  asio::steady_timer write_signal;  // the writer sleeps on it while `out` is empty
  std::unique_ptr<redisReader, ReaderDeleter> reader;
  std::string out;  // encoded commands not yet handed to the socket
  std::deque<std::shared_ptr<Pending>> pending;
  bool writer_idle = false;
  bool open = true;
};

}  // namespace

struct Client::Impl {
  Impl(asio::io_context& io_context, Url u, milliseconds t)
      : io(io_context),
        url(std::move(u)),
        timeout(t),
        connect_timeout(std::max(t, kMinConnectTimeout)),
        resolver(io_context),
        backoff(io_context),
        session_end(io_context) {}

  asio::io_context& io;
  const Url url;
  const milliseconds timeout;
  const milliseconds connect_timeout;
  tcp::resolver resolver;
  asio::steady_timer backoff;              // sleep between connection attempts
  asio::steady_timer session_end;          // the connect loop sleeps on it while connected
  std::shared_ptr<Connection> conn;        // current connection (handshaking or ready)
  std::shared_ptr<Connection> connecting;  // being resolved / connected
  bool running = false;
  bool ready = false;  // connected, authenticated, database selected
  std::uint64_t run_id = 0;

  bool alive(std::uint64_t id) const { return running && run_id == id; }

  void spawn(asio::awaitable<void> coroutine, const char* what) {
    asio::co_spawn(io, std::move(coroutine),
                   [what](std::exception_ptr e) { log::escaped(e, what); });
  }

  // Closes `c` and fails every caller still waiting on it. Idempotent.
  static void drop(const std::shared_ptr<Impl>& self, const std::shared_ptr<Connection>& c,
                   std::string_view reason) {
    if (!c->open) return;
    c->open = false;
    error_code ignored;
    c->socket.close(ignored);
    c->out.clear();
    c->write_signal.cancel();
    auto pending = std::move(c->pending);
    c->pending.clear();
    for (auto& p : pending) {
      if (p->abandoned || p->done) continue;
      p->done = true;
      p->failed = true;
      p->signal.cancel();
    }
    if (self->conn == c) {
      bool was_ready = self->ready;
      self->ready = false;
      self->conn.reset();
      self->session_end.cancel();
      if (was_ready && self->running) {
        log::warn("redis connection lost", {{"host", self->url.host},
                                            {"port", self->url.port},
                                            {"reason", reason},
                                            {"pending", pending.size()}});
      }
    }
  }

  // Queues one command on `c` and waits for its reply, the deadline or cancellation.
  static asio::awaitable<Reply> exec(std::shared_ptr<Connection> c, std::vector<std::string> args,
                                     milliseconds deadline) {
    if (!c->open) throw Unavailable("redis is not connected");
    auto p = std::make_shared<Pending>(c->socket.get_executor());
    p->signal.expires_after(deadline);
    encode_command(c->out, args);
    c->pending.push_back(p);
    if (c->writer_idle) c->write_signal.cancel();

    AbandonOnExit guard{*p};
    auto [ec] = co_await p->signal.async_wait(kTuple);
    if (p->done) {
      if (p->failed) throw Unavailable("redis connection lost before the reply arrived");
      co_return std::move(p->reply);
    }
    p->abandoned = true;  // the reader will consume and drop this reply
    if (ec == asio::error::operation_aborted) throw boost::system::system_error(ec);
    throw Unavailable("redis command timed out");
  }

  static asio::awaitable<Reply> command(std::shared_ptr<Impl> self, std::vector<std::string> args) {
    if (args.empty()) throw std::invalid_argument("redis command without arguments");
    if (!self->ready || !self->conn) throw Unavailable("redis is not connected");
    co_return co_await exec(self->conn, std::move(args), self->timeout);
  }

  static asio::awaitable<void> write_loop(std::shared_ptr<Impl> self,
                                          std::shared_ptr<Connection> c) {
    std::string buf;
    while (c->open) {
      if (c->out.empty()) {
        c->writer_idle = true;
        c->write_signal.expires_at(asio::steady_timer::time_point::max());
        co_await c->write_signal.async_wait(kTuple);
        c->writer_idle = false;
        continue;
      }
      buf.clear();
      buf.swap(c->out);
      auto [ec, n] = co_await asio::async_write(c->socket, asio::buffer(buf), kTuple);
      if (ec) {
        drop(self, c, "write failed: " + ec.message());
        co_return;
      }
    }
  }

  static asio::awaitable<void> read_loop(std::shared_ptr<Impl> self,
                                         std::shared_ptr<Connection> c) {
    std::vector<char> buf(kReadChunk);
    redisReader* reader = c->reader.get();
    while (c->open) {
      auto [ec, n] = co_await c->socket.async_read_some(asio::buffer(buf), kTuple);
      if (!c->open) co_return;
      if (ec) {
        drop(self, c,
             ec == asio::error::eof ? std::string("closed by server")
                                    : "read failed: " + ec.message());
        co_return;
      }
      if (redisReaderFeed(reader, buf.data(), n) != REDIS_OK) {
        drop(self, c, std::string("protocol error: ") + reader->errstr);
        co_return;
      }
      for (;;) {
        void* raw = nullptr;
        if (redisReaderGetReply(reader, &raw) != REDIS_OK) {
          drop(self, c, std::string("protocol error: ") + reader->errstr);
          co_return;
        }
        if (raw == nullptr) break;
        std::unique_ptr<redisReply, ReplyDeleter> reply(static_cast<redisReply*>(raw));
        if (c->pending.empty()) {
          drop(self, c, "reply without a command");
          co_return;
        }
        auto p = std::move(c->pending.front());
        c->pending.pop_front();
        if (p->abandoned) continue;
        p->reply = convert(*reply);
        p->done = true;
        p->signal.cancel();
      }
      if (reader->len - reader->pos > kMaxBufferedBytes) {
        drop(self, c, "reply too large");
        co_return;
      }
    }
  }

  // Resolves and connects `c`'s socket within connect_timeout. Returns an error text, empty
  // on success.
  static asio::awaitable<std::string> connect_socket(std::shared_ptr<Impl> self,
                                                     std::shared_ptr<Connection> c) {
    struct Attempt {
      bool finished = false;
      bool timed_out = false;
    };
    auto attempt = std::make_shared<Attempt>();
    asio::steady_timer guard(self->io, self->connect_timeout);
    guard.async_wait([self, c, attempt](error_code ec) {
      if (ec || attempt->finished) return;
      attempt->timed_out = true;
      self->resolver.cancel();
      error_code ignored;
      c->socket.close(ignored);
    });

    error_code ec;
    auto address = asio::ip::make_address(self->url.host, ec);
    if (!ec) {
      tcp::endpoint endpoint(address, static_cast<unsigned short>(self->url.port));
      std::tie(ec) = co_await c->socket.async_connect(endpoint, kTuple);
    } else {
      auto [rec, endpoints] = co_await self->resolver.async_resolve(
          self->url.host, std::to_string(self->url.port), kTuple);
      ec = rec;
      if (!ec) {
        tcp::endpoint connected;
        std::tie(ec, connected) = co_await asio::async_connect(c->socket, endpoints, kTuple);
      }
    }
    attempt->finished = true;
    if (attempt->timed_out) co_return "connect timed out";
    if (ec) co_return "connect: " + ec.message();
    error_code ignored;
    c->socket.set_option(tcp::no_delay(true), ignored);
    co_return std::string();
  }

  // AUTH and SELECT through the normal pipeline, before commands are let through.
  static asio::awaitable<std::string> handshake(std::shared_ptr<Impl> self,
                                                std::shared_ptr<Connection> c) {
    try {
      if (!self->url.password.empty()) {
        std::vector<std::string> auth{"AUTH", self->url.password};
        Reply r = co_await exec(c, std::move(auth), self->connect_timeout);
        if (r.is_error()) co_return "AUTH failed: " + r.str;
      }
      if (self->url.db != 0) {
        std::vector<std::string> select{"SELECT", std::to_string(self->url.db)};
        Reply r = co_await exec(c, std::move(select), self->connect_timeout);
        if (r.is_error()) co_return "SELECT failed: " + r.str;
      }
    } catch (const std::exception& e) {
      co_return std::string("handshake: ") + e.what();
    }
    co_return std::string();
  }

  static asio::awaitable<void> connect_loop(std::shared_ptr<Impl> self, std::uint64_t id) {
    milliseconds delay = kBackoffMin;
    while (self->alive(id)) {
      auto c = std::make_shared<Connection>(self->io);
      self->connecting = c;
      std::string failure = co_await connect_socket(self, c);
      if (self->connecting == c) self->connecting.reset();
      if (!self->alive(id)) break;

      bool was_connected = false;
      if (failure.empty()) {
        self->conn = c;
        self->spawn(read_loop(self, c), "redis read loop");
        self->spawn(write_loop(self, c), "redis write loop");
        failure = co_await handshake(self, c);
        if (failure.empty() && c->open && self->conn == c && self->alive(id)) {
          self->ready = true;
          was_connected = true;
          delay = kBackoffMin;
          log::info("redis connected", {{"host", self->url.host}, {"port", self->url.port}});
          while (c->open) {
            self->session_end.expires_at(asio::steady_timer::time_point::max());
            co_await self->session_end.async_wait(kTuple);
          }
        } else {
          drop(self, c, failure);
        }
      }
      if (!self->alive(id)) break;
      if (!was_connected) {
        log::warn("redis connect failed", {{"host", self->url.host},
                                           {"port", self->url.port},
                                           {"error", failure.empty() ? "closed" : failure},
                                           {"retry_ms", static_cast<std::int64_t>(delay.count())}});
      }
      self->backoff.expires_after(delay);
      co_await self->backoff.async_wait(kTuple);
      if (!was_connected) delay = std::min(delay * 2, kBackoffMax);
    }
  }
};

Client::Client(asio::io_context& io, const std::string& url, milliseconds timeout)
    : impl_(std::make_shared<Impl>(io, parse_url(url), timeout)) {}

Client::~Client() {
  if (impl_) stop();
}

void Client::start() {
  if (impl_->running) return;
  impl_->running = true;
  ++impl_->run_id;
  impl_->spawn(Impl::connect_loop(impl_, impl_->run_id), "redis connect loop");
}

void Client::stop() {
  auto& self = impl_;
  self->running = false;
  self->backoff.cancel();
  self->resolver.cancel();
  if (self->connecting) {
    error_code ignored;
    self->connecting->socket.close(ignored);
    self->connecting.reset();
  }
  if (auto c = self->conn) Impl::drop(self, c, "stopped");
  self->ready = false;
  self->session_end.cancel();
}

asio::awaitable<Reply> Client::command(std::vector<std::string> args) {
  return Impl::command(impl_, std::move(args));
}

bool Client::connected() const { return impl_->ready; }

}  // namespace hsea::redis
