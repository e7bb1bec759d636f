// MIME composition and header encoding of outgoing mail.
#include <gtest/gtest.h>

#include <sstream>

#include "mail/mime.hpp"

namespace hsea::mail {
namespace {

Envelope sample() {
  Envelope e;
  e.from_name = "Acme";
  e.from_address = "no-reply@example.com";
  e.to_name = "Ada Lovelace";
  e.to_address = "ada@example.com";
  e.subject = "Welcome to Acme";
  e.message_id = "<0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b@app.example.com>";
  e.date = 1795510151;  // 2026-11-24T08:49:11Z
  e.text = "Hello Ada,\nwelcome.\n";
  e.html = "<p>Hello Ada</p>";
  return e;
}

std::string header(const std::string& message, const std::string& name) {
  std::size_t at = message.find("\r\n" + name + ": ");
  if (message.starts_with(name + ": "))
    at = 0;
  else if (at == std::string::npos)
    return "";
  else
    at += 2;
  std::size_t end = message.find("\r\n", at);
  return message.substr(at + name.size() + 2, end - at - name.size() - 2);
}

TEST(Mime, AMessageHasEveryHeaderAndBothPartsWithCrlfLineEnds) {
  std::string m = compose(sample());
  EXPECT_EQ(header(m, "Date"), "Tue, 24 Nov 2026 08:49:11 +0000");
  EXPECT_EQ(header(m, "From"), "\"Acme\" <no-reply@example.com>");
  EXPECT_EQ(header(m, "To"), "\"Ada Lovelace\" <ada@example.com>");
  EXPECT_EQ(header(m, "Subject"), "Welcome to Acme");
  EXPECT_EQ(header(m, "Message-ID"), "<0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b@app.example.com>");
  EXPECT_EQ(header(m, "MIME-Version"), "1.0");
  std::string type = header(m, "Content-Type");
  ASSERT_TRUE(type.starts_with("multipart/alternative; boundary=\"=_hsea_")) << type;
  std::string boundary = type.substr(type.find('"') + 1);
  boundary.pop_back();
  // text/plain first, text/html last (the preferred alternative), then the closing boundary.
  std::size_t plain = m.find("--" + boundary + "\r\nContent-Type: text/plain; charset=utf-8");
  std::size_t html = m.find("--" + boundary + "\r\nContent-Type: text/html; charset=utf-8");
  ASSERT_NE(plain, std::string::npos);
  ASSERT_NE(html, std::string::npos);
  EXPECT_LT(plain, html);
  EXPECT_TRUE(m.ends_with("--" + boundary + "--\r\n"));
  EXPECT_NE(m.find("Hello Ada,\r\nwelcome.\r\n"), std::string::npos);
  EXPECT_NE(m.find("<p>Hello Ada</p>"), std::string::npos);
  for (std::size_t i = 0; i < m.size(); ++i) {
    if (m[i] == '\n') {
      ASSERT_TRUE(i > 0 && m[i - 1] == '\r') << "bare LF at " << i;
    }
  }
}

TEST(Mime, TheSameMessageComposesToTheSameBytes) {
  EXPECT_EQ(compose(sample()), compose(sample()));  // a retry sends what the first try sent
}

TEST(Mime, NonAsciiSubjectsAndNamesAreEncodedWordsOfAtMost75Characters) {
  EXPECT_EQ(encode_header_text("Grüße"), "=?UTF-8?B?R3LDvMOfZQ==?=");
  EXPECT_EQ(mailbox("Zoë", "z@example.com"), "=?UTF-8?B?Wm/Dqw==?= <z@example.com>");
  std::string long_subject;
  for (int i = 0; i < 40; ++i) long_subject += "日本";
  std::string encoded = encode_header_text(long_subject);
  std::istringstream lines(encoded);
  std::string line, decoded_check;
  int words = 0;
  while (std::getline(lines, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.starts_with(" ")) line.erase(0, 1);
    EXPECT_LE(line.size(), 75u) << line;
    EXPECT_TRUE(line.starts_with("=?UTF-8?B?") && line.ends_with("?=")) << line;
    ++words;
  }
  EXPECT_GT(words, 1);
}

TEST(Mime, HeaderValuesCannotInjectHeaders) {
  Envelope e = sample();
  e.subject = "Hi\r\nBcc: victim@example.com";
  e.from_name = "Evil\nBcc: x@example.com";
  std::string m = compose(e);
  EXPECT_EQ(m.find("\r\nBcc:"), std::string::npos);
  EXPECT_EQ(header(m, "Subject"), "Hi  Bcc: victim@example.com");
  e.to_address = "a@example.com>\r\nBcc: b@example.com";
  EXPECT_THROW(compose(e), std::invalid_argument);
  e = sample();
  e.message_id = "no-angle@brackets";
  EXPECT_THROW(compose(e), std::invalid_argument);
}

TEST(Mime, QuotedPrintableKeepsLinesShortAndEncodesWhatTransportsTouch) {
  EXPECT_EQ(quoted_printable("a=b"), "a=3Db");
  EXPECT_EQ(quoted_printable("é"), "=C3=A9");
  EXPECT_EQ(quoted_printable("trailing \nx"), "trailing=20\r\nx");
  EXPECT_EQ(quoted_printable(".\nFrom me"), "=2E\r\n=46rom me");
  std::string long_line(300, 'x');
  std::string qp = quoted_printable(long_line);
  std::istringstream lines(qp);
  std::string line;
  std::string joined;
  while (std::getline(lines, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    EXPECT_LE(line.size(), 76u);
    if (line.ends_with("=")) line.pop_back();
    joined += line;
  }
  EXPECT_EQ(joined, long_line);
}

TEST(Mime, QuotedDisplayNamesEscapeQuotesAndBackslashes) {
  EXPECT_EQ(mailbox("A \"B\" \\ C", "a@example.com"), "\"A \\\"B\\\" \\\\ C\" <a@example.com>");
  EXPECT_EQ(mailbox("", "a@example.com"), "a@example.com");
  EXPECT_FALSE(valid_address("no-at-sign"));
  EXPECT_FALSE(valid_address("a b@example.com"));
  EXPECT_TRUE(valid_address("a.b+tag@example.co.uk"));
}

}  // namespace
}  // namespace hsea::mail
