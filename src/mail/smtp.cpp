#include "mail/smtp.hpp"

#include <curl/curl.h>

#include <cstring>
#include <memory>
#include <mutex>
#include <stdexcept>

namespace hsea::mail {
namespace {

struct Reader {
  const std::string* data;
  std::size_t offset = 0;
};

std::size_t read_body(char* buffer, std::size_t size, std::size_t items, void* user) {
  auto* reader = static_cast<Reader*>(user);
  std::size_t room = size * items;
  std::size_t left = reader->data->size() - reader->offset;
  std::size_t n = std::min(room, left);
  std::memcpy(buffer, reader->data->data() + reader->offset, n);
  reader->offset += n;
  return n;
}

}  // namespace

void smtp_send(const SmtpOptions& options, const std::string& from_address,
               const std::string& to_address, const std::string& message) {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl(curl_easy_init(), curl_easy_cleanup);
  if (!curl) throw std::runtime_error("curl_easy_init failed");
  curl_slist* recipients = nullptr;
  std::string rcpt = "<" + to_address + ">";
  recipients = curl_slist_append(recipients, rcpt.c_str());
  std::unique_ptr<curl_slist, decltype(&curl_slist_free_all)> guard(recipients,
                                                                    curl_slist_free_all);
  std::string from = "<" + from_address + ">";
  Reader reader{&message};
  char error[CURL_ERROR_SIZE] = {0};
  CURL* c = curl.get();
  curl_easy_setopt(c, CURLOPT_URL, options.url.c_str());
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
  curl_easy_setopt(c, CURLOPT_MAIL_FROM, from.c_str());
  curl_easy_setopt(c, CURLOPT_MAIL_RCPT, recipients);
  curl_easy_setopt(c, CURLOPT_READFUNCTION, read_body);
  curl_easy_setopt(c, CURLOPT_READDATA, &reader);
  curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
  curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(message.size()));
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, static_cast<long>(options.timeout_seconds));
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT,
                   static_cast<long>(std::min(options.timeout_seconds, 10)));
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, error);
  if (options.starttls) curl_easy_setopt(c, CURLOPT_USE_SSL, static_cast<long>(CURLUSESSL_ALL));
  CURLcode rc = curl_easy_perform(c);
  if (rc != CURLE_OK) {
    long reply = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &reply);
    std::string what = error[0] != 0 ? error : curl_easy_strerror(rc);
    if (reply != 0) what += " (reply " + std::to_string(reply) + ")";
    throw std::runtime_error("SMTP: " + what);
  }
}

}  // namespace hsea::mail
