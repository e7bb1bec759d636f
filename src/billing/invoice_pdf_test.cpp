// Invoice PDFs: money formatting, and rendered documents read back with pdftotext (poppler).
#include "billing/invoice_pdf.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <string>

namespace hsea::billing {
namespace {

// The text pdftotext (poppler-utils) reads from the PDF, in reading order.
std::string pdf_text(const std::string& pdf) {
  char path[] = "/tmp/hsea-invoice-XXXXXX";
  int fd = mkstemp(path);
  EXPECT_GE(fd, 0);
  EXPECT_EQ(write(fd, pdf.data(), pdf.size()), static_cast<ssize_t>(pdf.size()));
  close(fd);
  std::string command = std::string("pdftotext -layout -enc UTF-8 ") + path + " - 2>&1";
  std::string out;
  FILE* p = popen(command.c_str(), "r");
  EXPECT_NE(p, nullptr);
  std::array<char, 4096> buf{};
  std::size_t n = 0;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  EXPECT_EQ(pclose(p), 0) << out;
  unlink(path);
  return out;
}

InvoiceDocument sample(std::string currency) {
  InvoiceDocument inv;
  inv.number = "HSEA-0042";
  inv.status = "open";
  inv.currency = std::move(currency);
  inv.issued_on = "2026-11-01";
  inv.due_on = "2026-11-15";
  inv.period_start = "2026-11-01";
  inv.period_end = "2026-12-01";
  inv.seller = Party{"Acme Cloud GmbH", "", {"Hauptstraße 5", "10115 Berlin"}, "DE123456789"};
  inv.customer = Party{"Globex Corporation", "billing@globex.example", {"1 Main St"}, "US-98765"};
  inv.lines = {{"Pro plan (monthly)", 1, 4900}, {"Extra seats", 3, 3000}};
  inv.subtotal = 7900;
  inv.tax = 1501;
  inv.total = 9401;
  inv.amount_paid = 0;
  inv.amount_due = 9401;
  return inv;
}

TEST(InvoicePdf, FormatsUsdEurAndJpyWithTheirMinorUnits) {
  EXPECT_EQ(format_money(123456, "usd"), "$1,234.56");
  EXPECT_EQ(format_money(4900, "EUR"),
            "\xE2\x82\xAC"
            "49.00");
  EXPECT_EQ(format_money(1235, "jpy"),
            "\xC2\xA5"
            "1,235");
  EXPECT_EQ(format_money(5, "usd"), "$0.05");
  EXPECT_EQ(format_money(-2500, "usd"), "-$25.00");
  EXPECT_EQ(format_money(1234567, "chf"), "12,345.67 CHF");
  EXPECT_EQ(format_money(0, "krw"), "0 KRW");
  EXPECT_EQ(currency_exponent("JPY"), 0);
  EXPECT_EQ(currency_exponent("usd"), 2);
}

TEST(InvoicePdf, RendersSellerCustomerLinesTaxAndTotalsInDollars) {
  std::string pdf = render_invoice_pdf(sample("usd"));
  ASSERT_EQ(pdf.rfind("%PDF-", 0), 0u);
  std::string text = pdf_text(pdf);
  for (const char* expected :
       {"Acme Cloud GmbH", "Hauptstraße 5", "DE123456789", "Globex Corporation",
        "billing@globex.example", "US-98765", "HSEA-0042", "Pro plan (monthly)", "Extra seats",
        "$49.00", "$30.00", "$79.00", "$15.01", "$94.01 due 2026-11-15", "2026-11-01 to 2026-12-01",
        "Amounts in USD."}) {
    EXPECT_NE(text.find(expected), std::string::npos) << expected << " not in:\n" << text;
  }
}

TEST(InvoicePdf, EurosAndYenReadBackWithTheirSymbols) {
  std::string eur = pdf_text(render_invoice_pdf(sample("eur")));
  EXPECT_NE(eur.find("\xE2\x82\xAC"
                     "94.01"),
            std::string::npos)
      << eur;
  InvoiceDocument yen = sample("jpy");
  yen.lines = {{"Pro plan (monthly)", 1, 4900}, {"Extra seats", 3, 3000}};
  yen.subtotal = 7900;
  yen.tax = 790;
  yen.total = yen.amount_paid = 8690;
  yen.amount_due = 0;
  yen.status = "paid";
  yen.paid_on = "2026-11-02";
  std::string text = pdf_text(render_invoice_pdf(yen));
  EXPECT_NE(text.find("\xC2\xA5"
                      "4,900"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("\xC2\xA5"
                      "8,690 paid on 2026-11-02"),
            std::string::npos)
      << text;
  EXPECT_EQ(text.find("8,690.00"), std::string::npos) << "yen have no minor unit";
}

TEST(InvoicePdf, ManyLinesContinueOnMorePagesAndLongTextIsCut) {
  InvoiceDocument inv = sample("usd");
  inv.lines.clear();
  for (int i = 0; i < 120; ++i) {
    inv.lines.push_back({"Line " + std::to_string(i), 1, 100});
  }
  inv.lines.push_back({std::string(400, 'x') + " \xE6\x97\xA5\xE6\x9C\xAC", 1, 1});
  inv.subtotal = inv.total = inv.amount_due = 12001;
  inv.tax = 0;
  std::string text = pdf_text(render_invoice_pdf(inv));
  EXPECT_NE(text.find("Line 0"), std::string::npos);
  EXPECT_NE(text.find("Line 119"), std::string::npos);
  EXPECT_NE(text.find("$120.01"), std::string::npos);
  EXPECT_NE(text.find('\f'), std::string::npos) << "more than one page";
  EXPECT_NE(text.find("xxx..."), std::string::npos);
}

TEST(InvoicePdf, TextOutsideWindows1252BecomesQuestionMarks) {
  InvoiceDocument inv = sample("usd");
  inv.customer.name = "\xE6\x97\xA5\xE6\x9C\xAC Corp \xE2\x80\x94 \x01";
  std::string text = pdf_text(render_invoice_pdf(inv));
  EXPECT_NE(text.find("?? Corp \xE2\x80\x94"), std::string::npos) << text;
}

}  // namespace
}  // namespace hsea::billing
