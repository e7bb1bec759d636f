#include "billing/invoice_pdf.hpp"

#include <hpdf.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <memory>
#include <stdexcept>

#include <fmt/format.h>

namespace hsea::billing {
namespace {

std::string upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

// Stripe's zero-decimal currencies (its docs' list).
constexpr std::array<std::string_view, 16> kZeroDecimal{"BIF", "CLP", "DJF", "GNF", "JPY", "KMF",
                                                        "KRW", "MGA", "PYG", "RWF", "UGX", "VND",
                                                        "VUV", "XAF", "XOF", "XPF"};

std::string_view symbol_of(std::string_view code) {
  if (code == "USD") return "$";
  if (code == "EUR") return "\xE2\x82\xAC";  // €
  if (code == "GBP") return "\xC2\xA3";      // £
  if (code == "JPY") return "\xC2\xA5";      // ¥
  return {};
}

std::string grouped(std::uint64_t n) {
  std::string digits = std::to_string(n);
  std::string out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

// UTF-8 to Windows-1252, the encoding of the standard Helvetica here; what it cannot show
// becomes "?", control characters a space.
std::string to_cp1252(std::string_view s) {
  static constexpr std::array<std::pair<char32_t, unsigned char>, 27> kHigh{
      {{0x20AC, 0x80}, {0x201A, 0x82}, {0x0192, 0x83}, {0x201E, 0x84}, {0x2026, 0x85},
       {0x2020, 0x86}, {0x2021, 0x87}, {0x02C6, 0x88}, {0x2030, 0x89}, {0x0160, 0x8A},
       {0x2039, 0x8B}, {0x0152, 0x8C}, {0x017D, 0x8E}, {0x2018, 0x91}, {0x2019, 0x92},
       {0x201C, 0x93}, {0x201D, 0x94}, {0x2022, 0x95}, {0x2013, 0x96}, {0x2014, 0x97},
       {0x02DC, 0x98}, {0x2122, 0x99}, {0x0161, 0x9A}, {0x203A, 0x9B}, {0x0153, 0x9C},
       {0x017E, 0x9E}, {0x0178, 0x9F}}};
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    auto b = static_cast<unsigned char>(s[i]);
    char32_t cp = 0;
    int len = b < 0x80 ? 1 : (b >> 5) == 6 ? 2 : (b >> 4) == 14 ? 3 : (b >> 3) == 30 ? 4 : 0;
    if (len == 0 || i + len > s.size()) {
      out += '?';
      ++i;
      continue;
    }
    cp = len == 1 ? b : b & (0x7F >> len);
    bool ok = true;
    for (int k = 1; k < len; ++k) {
      auto c = static_cast<unsigned char>(s[i + k]);
      ok &= (c & 0xC0) == 0x80;
      cp = (cp << 6) | (c & 0x3F);
    }
    i += ok ? len : 1;
    if (!ok) {
      out += '?';
    } else if (cp < 0x20 || cp == 0x7F) {
      out += ' ';
    } else if (cp < 0x80 || (cp >= 0xA0 && cp <= 0xFF)) {
      out += static_cast<char>(cp);
    } else {
      auto it = std::find_if(kHigh.begin(), kHigh.end(), [cp](auto& p) { return p.first == cp; });
      out += it == kHigh.end() ? '?' : static_cast<char>(it->second);
    }
  }
  return out;
}

// libharu reports errors through a callback; it keeps the first and the renderer checks it
// after each step (a C callback must not throw through libharu's frames).
struct Errors {
  HPDF_STATUS first = HPDF_OK;
  HPDF_STATUS detail = 0;
};
void on_error(HPDF_STATUS error, HPDF_STATUS detail, void* user) {
  auto* e = static_cast<Errors*>(user);
  if (e->first == HPDF_OK) {
    e->first = error;
    e->detail = detail;
  }
}

constexpr float kLeft = 50, kRight = 545, kTop = 792, kBottom = 70;

class Writer {
 public:
  Writer() : pdf_(HPDF_New(on_error, &errors_), HPDF_Free) {
    if (!pdf_) throw std::runtime_error("libharu: cannot create a document");
    HPDF_SetCompressionMode(pdf_.get(), HPDF_COMP_ALL);
    regular_ = HPDF_GetFont(pdf_.get(), "Helvetica", "WinAnsiEncoding");
    bold_ = HPDF_GetFont(pdf_.get(), "Helvetica-Bold", "WinAnsiEncoding");
    check();
  }

  void new_page() {
    page_ = HPDF_AddPage(pdf_.get());
    HPDF_Page_SetSize(page_, HPDF_PAGE_SIZE_A4, HPDF_PAGE_PORTRAIT);
    y_ = kTop;
    ++pages_;
    check();
  }

  float y() const { return y_; }
  void down(float dy) { y_ -= dy; }
  void at(float y) { y_ = y; }
  int pages() const { return pages_; }
  // Starts a new page (with `header` run on it) when fewer than `needed` points are left.
  template <typename Header>
  void ensure(float needed, Header header) {
    if (y_ - needed >= kBottom) return;
    new_page();
    header();
  }

  // Text at x (left-aligned) on the current line; text is UTF-8. Longer than max_width: cut
  // with "...".
  void text(float x, std::string_view utf8, float size, bool bold = false, float max_width = 0) {
    std::string s = to_cp1252(utf8);
    HPDF_Page_SetFontAndSize(page_, bold ? bold_ : regular_, size);
    if (max_width > 0 && HPDF_Page_TextWidth(page_, s.c_str()) > max_width) {
      while (!s.empty() && HPDF_Page_TextWidth(page_, (s + "...").c_str()) > max_width)
        s.pop_back();
      s += "...";
    }
    HPDF_Page_BeginText(page_);
    HPDF_Page_TextOut(page_, x, y_, s.c_str());
    HPDF_Page_EndText(page_);
    check();
  }
  // Right-aligned so that it ends at x.
  void text_right(float x, std::string_view utf8, float size, bool bold = false) {
    std::string s = to_cp1252(utf8);
    HPDF_Page_SetFontAndSize(page_, bold ? bold_ : regular_, size);
    float w = HPDF_Page_TextWidth(page_, s.c_str());
    HPDF_Page_BeginText(page_);
    HPDF_Page_TextOut(page_, x - w, y_, s.c_str());
    HPDF_Page_EndText(page_);
    check();
  }
  void rule(float x0, float x1, float grey = 0.8f) {
    HPDF_Page_SetRGBStroke(page_, grey, grey, grey);
    HPDF_Page_SetLineWidth(page_, 0.7f);
    HPDF_Page_MoveTo(page_, x0, y_);
    HPDF_Page_LineTo(page_, x1, y_);
    HPDF_Page_Stroke(page_);
    check();
  }

  std::string bytes() {
    HPDF_SaveToStream(pdf_.get());
    check();
    HPDF_UINT32 size = HPDF_GetStreamSize(pdf_.get());
    std::string out(size, '\0');
    HPDF_ReadFromStream(pdf_.get(), reinterpret_cast<HPDF_BYTE*>(out.data()), &size);
    // A complete read reports HPDF_STREAM_EOF through the handler; that is not a failure.
    if (errors_.first == HPDF_STREAM_EOF) errors_.first = HPDF_OK;
    check();
    out.resize(size);
    return out;
  }

 private:
  void check() const {
    if (errors_.first != HPDF_OK) {
      throw std::runtime_error(
          fmt::format("libharu error 0x{:04X} (detail {})", errors_.first, errors_.detail));
    }
  }

  Errors errors_;
  std::unique_ptr<std::remove_pointer_t<HPDF_Doc>, decltype(&HPDF_Free)> pdf_;
  HPDF_Font regular_ = nullptr;
  HPDF_Font bold_ = nullptr;
  HPDF_Page page_ = nullptr;
  float y_ = kTop;
  int pages_ = 0;
};

void party(Writer& w, float x, const Party& p, float width) {
  if (!p.name.empty()) {
    w.text(x, p.name, 10, true, width);
    w.down(13);
  }
  for (const std::string& line : p.address) {
    if (line.empty()) continue;
    w.text(x, line, 9, false, width);
    w.down(12);
  }
  if (!p.email.empty()) {
    w.text(x, p.email, 9, false, width);
    w.down(12);
  }
  if (!p.tax_id.empty()) {
    w.text(x, "Tax ID: " + p.tax_id, 9, false, width);
    w.down(12);
  }
}

std::string title_case(std::string s) {
  if (!s.empty()) s[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(s[0])));
  return s;
}

}  // namespace

int currency_exponent(std::string_view currency) {
  std::string code = upper(currency);
  return std::find(kZeroDecimal.begin(), kZeroDecimal.end(), code) != kZeroDecimal.end() ? 0 : 2;
}

std::string format_money(std::int64_t minor, std::string_view currency) {
  std::string code = upper(currency);
  int exponent = currency_exponent(code);
  // Magnitude without overflow for INT64_MIN.
  std::uint64_t magnitude = minor < 0 ? std::uint64_t(0) - static_cast<std::uint64_t>(minor)
                                      : static_cast<std::uint64_t>(minor);
  std::string number;
  if (exponent == 0) {
    number = grouped(magnitude);
  } else {
    number = grouped(magnitude / 100) + fmt::format(".{:02}", magnitude % 100);
  }
  std::string sign = minor < 0 ? "-" : "";
  std::string_view symbol = symbol_of(code);
  if (!symbol.empty()) return sign + std::string(symbol) + number;
  return sign + number + " " + code;
}

std::string render_invoice_pdf(const InvoiceDocument& inv) {
  Writer w;
  w.new_page();
  const std::string& cur = inv.currency;
  constexpr float kQtyRight = 430, kAmountRight = kRight;

  // Seller (left) and the invoice's identity (right).
  w.text(kLeft, inv.seller.name.empty() ? std::string("Invoice") : inv.seller.name, 16, true, 300);
  w.text_right(kRight, "INVOICE", 20, true);
  w.down(20);
  float after_seller = 0;
  {
    float top = w.y();
    Party seller = inv.seller;
    seller.name.clear();
    party(w, kLeft, seller, 280);
    after_seller = w.y();
    w.at(top);
    auto meta = [&](std::string_view label, const std::string& value) {
      if (value.empty()) return;
      w.text(360, label, 9, true);
      w.text_right(kRight, value, 9);
      w.down(12);
    };
    meta("Invoice number", inv.number);
    meta("Date of issue", inv.issued_on);
    meta("Date due", inv.due_on);
    meta("Status", title_case(inv.status));
    if (!inv.paid_on.empty()) meta("Paid on", inv.paid_on);
    w.at(std::min(after_seller, w.y()) - 14);
  }

  // Bill to.
  w.text(kLeft, "Bill to", 9, true);
  w.down(13);
  party(w, kLeft, inv.customer, 300);
  if (!inv.period_start.empty() && !inv.period_end.empty()) {
    w.down(4);
    w.text(kLeft, "Service period: " + inv.period_start + " to " + inv.period_end, 9);
    w.down(12);
  }
  w.down(10);
  // The amount due, large, as invoices lead with it.
  w.text(kLeft,
         inv.status == "paid" ? format_money(inv.total, cur) + " paid" +
                                    (inv.paid_on.empty() ? "" : " on " + inv.paid_on)
                              : format_money(inv.amount_due, cur) + " due" +
                                    (inv.due_on.empty() ? "" : " " + inv.due_on),
         14, true);
  w.down(26);

  auto table_header = [&] {
    w.text(kLeft, "Description", 9, true);
    w.text_right(kQtyRight, "Qty", 9, true);
    w.text_right(kAmountRight, "Amount", 9, true);
    w.down(6);
    w.rule(kLeft, kRight, 0.3f);
    w.down(14);
  };
  table_header();
  for (const InvoiceLine& line : inv.lines) {
    w.ensure(16, table_header);
    w.text(kLeft, line.description, 9, false, 330);
    w.text_right(kQtyRight, std::to_string(line.quantity), 9);
    w.text_right(kAmountRight, format_money(line.amount, cur), 9);
    w.down(6);
    w.rule(kLeft, kRight);
    w.down(14);
  }

  // Totals, right-aligned under the amounts.
  w.ensure(80, [] {});
  auto total = [&](std::string_view label, std::int64_t amount, bool bold) {
    w.text(330, label, 9, bold);
    w.text_right(kAmountRight, format_money(amount, cur), 9, bold);
    w.down(14);
  };
  total("Subtotal", inv.subtotal, false);
  total("Tax", inv.tax, false);
  total("Total", inv.total, true);
  total("Amount paid", inv.amount_paid, false);
  total("Amount due", inv.amount_due, true);

  w.down(20);
  w.ensure(14, [] {});
  w.text(kLeft, "Amounts in " + upper(cur) + ".", 8);
  return w.bytes();
}

}  // namespace hsea::billing
