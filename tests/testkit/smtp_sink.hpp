#pragma once
// A real SMTP server for black-box tests: tests/node/smtp-sink.js (npm smtp-server, read with
// mailparser) on a free port, and what it received, one JSON object per message.
#include <gtest/gtest.h>

#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace hsea::testkit {

using namespace std::chrono_literals;

inline std::string read_all(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

class SmtpSink {
 public:
  explicit SmtpSink(std::vector<std::string> options = {}) {
    static int counter = 0;
    std::string base =
        "/tmp/hsea-smtp-sink-" + std::to_string(getpid()) + "-" + std::to_string(++counter);
    out_ = base + ".jsonl";
    log_ = base + ".log";
    unlink(out_.c_str());
    std::string script = std::string(HSEA_SOURCE_DIR) + "/tests/node/smtp-sink.js";
    std::vector<std::string> args{"node", script, out_};
    for (auto& o : options) args.push_back(o);
    pid_ = fork();
    if (pid_ == 0) {
      int fd = open(log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      dup2(fd, 1);
      dup2(fd, 2);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execvp("node", argv.data());
      _exit(127);
    }
    static const std::regex kListening(R"(listening (\d+))");
    auto deadline = std::chrono::steady_clock::now() + 20s;
    while (std::chrono::steady_clock::now() < deadline) {
      std::smatch m;
      std::string log = read_all(log_);
      if (std::regex_search(log, m, kListening)) {
        port_ = std::stoi(m[1]);
        return;
      }
      std::this_thread::sleep_for(50ms);
    }
    ADD_FAILURE() << "the SMTP sink did not start: " << read_all(log_);
  }
  ~SmtpSink() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      waitpid(pid_, nullptr, 0);
    }
    unlink(out_.c_str());
    unlink(log_.c_str());
  }
  std::string url() const { return "smtp://mailer:secret@127.0.0.1:" + std::to_string(port_); }
  std::string log() const { return read_all(log_); }
  // Every line so far (accepted and refused messages).
  std::vector<boost::json::object> lines() const {
    std::vector<boost::json::object> out;
    std::istringstream in(read_all(out_));
    std::string line;
    while (std::getline(in, line)) {
      if (!line.empty()) out.push_back(boost::json::parse(line).as_object());
    }
    return out;
  }
  std::vector<boost::json::object> accepted_for(const std::string& rcpt) const {
    std::vector<boost::json::object> out;
    for (auto& l : lines()) {
      if (l.contains("refused")) continue;
      for (auto& r : l.at("rcpt_to").as_array()) {
        if (r.as_string() == rcpt) out.push_back(l);
      }
    }
    return out;
  }
  // Those of `rcpt` whose subject starts with `prefix` (sign-up also mails a verification link).
  std::vector<boost::json::object> accepted_for(const std::string& rcpt,
                                                const std::string& prefix) const {
    std::vector<boost::json::object> out = accepted_for(rcpt);
    std::erase_if(out, [&](const boost::json::object& m) {
      return !m.at("subject").is_string() || !m.at("subject").as_string().starts_with(prefix);
    });
    return out;
  }
  // Waits until `rcpt` has received `count` messages (or the timeout passes).
  std::vector<boost::json::object> wait_for(const std::string& rcpt, std::size_t count = 1,
                                            std::chrono::seconds timeout = 30s) const {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      auto found = accepted_for(rcpt);
      if (found.size() >= count) return found;
      std::this_thread::sleep_for(100ms);
    }
    return accepted_for(rcpt);
  }

 private:
  pid_t pid_ = -1;
  int port_ = 0;
  std::string out_, log_;
};

}  // namespace hsea::testkit
