#pragma once
// Sending one message over SMTP with libcurl. Blocking: run it on the runtime's I/O pool.
#include <string>

namespace hsea::mail {

struct SmtpOptions {
  std::string url;        // smtp://[user:password@]host[:port] or smtps://... (implicit TLS)
  bool starttls = false;  // require STARTTLS on smtp://
  int timeout_seconds = 30;
};

// Throws std::runtime_error with curl's message (and the server's reply) when the server does
// not accept the message.
void smtp_send(const SmtpOptions& options, const std::string& from_address,
               const std::string& to_address, const std::string& message);

}  // namespace hsea::mail
