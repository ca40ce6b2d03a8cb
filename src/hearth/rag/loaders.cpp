#include "hearth/rag/loaders.hpp"

#include <fcntl.h>
#include <libxml/HTMLparser.h>
#include <libxml/tree.h>
#include <poppler-document.h>
#include <poppler-global.h>
#include <poppler-page.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <system_error>

#include "hearth/core/error.hpp"
#include "hearth/core/mapped_file.hpp"
#include "hearth/core/utf8.hpp"

namespace hearth::rag {
namespace fs = std::filesystem;
namespace {

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f';
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

// Appends blocks to a document, separating them with a blank line.
class Builder {
 public:
  explicit Builder(LoadedDocument& doc) : doc_(doc) {}

  void add(std::string_view s, int heading_level) {
    s = trim(s);
    if (s.empty()) return;
    if (!doc_.text.empty()) doc_.text += "\n\n";
    const std::size_t begin = doc_.text.size();
    doc_.text.append(s);
    doc_.blocks.push_back({heading_level, begin, doc_.text.size()});
    if (heading_level > 0 && doc_.title.empty()) doc_.title = std::string(s);
  }

 private:
  LoadedDocument& doc_;
};

// Records paragraphs (runs of non-blank lines) of doc.text[from, to) as blocks in place.
void add_paragraphs_in_place(LoadedDocument& doc, std::size_t from, std::size_t to) {
  std::size_t para_begin = std::string::npos;
  std::size_t para_end = 0;
  std::size_t pos = from;
  while (pos < to) {
    std::size_t eol = doc.text.find('\n', pos);
    if (eol == std::string::npos || eol > to) eol = to;
    const std::string_view line(doc.text.data() + pos, eol - pos);
    if (trim(line).empty()) {
      if (para_begin != std::string::npos) doc.blocks.push_back({0, para_begin, para_end});
      para_begin = std::string::npos;
    } else {
      std::size_t b = pos;
      while (is_space(doc.text[b])) ++b;
      std::size_t e = eol;
      while (e > b && is_space(doc.text[e - 1])) --e;
      if (para_begin == std::string::npos) para_begin = b;
      para_end = e;
    }
    pos = eol + 1;
  }
  if (para_begin != std::string::npos) doc.blocks.push_back({0, para_begin, para_end});
}

// What a file's first bytes say it is, when that is a well-known binary format: "a PDF
// document", "a PNG image", "a zip archive", ...; nullptr otherwise.
const char* binary_format(std::string_view b) {
  using namespace std::string_view_literals;
  struct Magic {
    std::size_t offset;
    std::string_view bytes;
    const char* what;
  };
  static constexpr Magic kMagic[] = {
      {0, "%PDF-"sv, "a PDF document"},
      {0, "\x89PNG\r\n\x1A\n"sv, "a PNG image"},
      {0, "\xFF\xD8\xFF"sv, "a JPEG image"},
      {0, "GIF87a"sv, "a GIF image"},
      {0, "GIF89a"sv, "a GIF image"},
      {0, "II*\0"sv, "a TIFF image"},
      {0, "MM\0*"sv, "a TIFF image"},
      {0, "PK\x03\x04"sv, "a zip archive (or an Office/EPUB document)"},
      {0, "\x1F\x8B"sv, "a gzip archive"},
      {0,
       "\xFD"
       "7zXZ\0"sv,
       "an xz archive"},
      {0, "7z\xBC\xAF\x27\x1C"sv, "a 7-Zip archive"},
      {0, "\x28\xB5\x2F\xFD"sv, "a zstd archive"},
      {0, "Rar!\x1A\x07"sv, "a RAR archive"},
      {257, "ustar"sv, "a tar archive"},
      {0,
       "\x7F"
       "ELF"sv,
       "an ELF executable"},
      {0, "SQLite format 3\0"sv, "an SQLite database"},
  };
  for (const Magic& m : kMagic) {
    if (b.size() >= m.offset + m.bytes.size() && b.substr(m.offset, m.bytes.size()) == m.bytes) {
      return m.what;
    }
  }
  if (b.size() >= 12 && b.substr(0, 4) == "RIFF" && b.substr(8, 4) == "WEBP") return "a WebP image";
  if (b.size() >= 10 && b.substr(0, 3) == "BZh" && b.substr(4, 6) == "1AY&SY") {
    return "a bzip2 archive";
  }
  return nullptr;
}

// Plain text and HTML must not be binary: a known binary format is named; NUL bytes or many
// control characters mean the content is not text.
void check_textual(std::string_view bytes, const char* kind) {
  if (const char* what = binary_format(bytes)) {
    throw Error(ErrorCode::kFormat, std::string("the content is ") + what + ", not " + kind);
  }
  const std::size_t n = std::min<std::size_t>(bytes.size(), 64 << 10);
  std::size_t control = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const auto c = static_cast<unsigned char>(bytes[i]);
    if (c == 0) {
      throw Error(ErrorCode::kFormat, std::string("binary data (NUL byte), not ") + kind,
                  {.offset = i});
    }
    if (c < 0x20 && c != '\n' && c != '\r' && c != '\t' && c != '\f') ++control;
  }
  if (n > 0 && control * 10 > n) {
    throw Error(ErrorCode::kFormat, std::string("binary data (control characters), not ") + kind);
  }
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// UTF-16 code units (after the BOM) as UTF-8; unpaired surrogates and an odd last byte become
// U+FFFD, counted in repaired.
std::string utf16_to_utf8(std::string_view b, bool big_endian, std::size_t* repaired) {
  std::string out;
  out.reserve(b.size());
  auto unit = [&](std::size_t i) {
    const auto hi = static_cast<unsigned char>(b[big_endian ? i : i + 1]);
    const auto lo = static_cast<unsigned char>(b[big_endian ? i + 1 : i]);
    return static_cast<char32_t>(hi << 8 | lo);
  };
  std::size_t i = 0;
  for (; i + 1 < b.size(); i += 2) {
    const char32_t u = unit(i);
    if (u >= 0xD800 && u < 0xDC00 && i + 3 < b.size() && unit(i + 2) >= 0xDC00 &&
        unit(i + 2) < 0xE000) {
      append_utf8(out, 0x10000 + ((u - 0xD800) << 10) + (unit(i + 2) - 0xDC00));
      i += 2;
    } else if (u >= 0xD800 && u < 0xE000) {
      append_utf8(out, 0xFFFD);
      ++*repaired;
    } else {
      append_utf8(out, u);
    }
  }
  if (i < b.size()) {
    append_utf8(out, 0xFFFD);
    ++*repaired;
  }
  return out;
}

bool ascii_text(char c) {
  return (c >= 0x20 && c < 0x7F) || (c >= '\t' && c <= '\r');
}

// The bytes of a text file as UTF-8: a UTF-8 byte order mark is dropped; UTF-16 is decoded into
// storage when it has a byte order mark or starts with two ASCII characters ("<\0h\0"). Other
// bytes are returned as they are.
std::string_view decode_bom(std::string_view bytes, std::string& storage, std::size_t* repaired) {
  if (bytes.starts_with("\xEF\xBB\xBF")) return bytes.substr(3);
  if (bytes.starts_with("\xFF\xFE") || bytes.starts_with("\xFE\xFF")) {
    storage = utf16_to_utf8(bytes.substr(2), bytes[0] == '\xFE', repaired);
    return storage;
  }
  if (bytes.size() >= 4) {
    const bool le = ascii_text(bytes[0]) && bytes[1] == 0 && ascii_text(bytes[2]) && bytes[3] == 0;
    const bool be = bytes[0] == 0 && ascii_text(bytes[1]) && bytes[2] == 0 && ascii_text(bytes[3]);
    if (le || be) {
      storage = utf16_to_utf8(bytes, be, repaired);
      return storage;
    }
  }
  return bytes;
}

LoadedDocument text_document(std::string_view bytes, const char* kind) {
  LoadedDocument doc;
  doc.kind = kind;
  std::string decoded;
  std::size_t repaired = 0;
  bytes = decode_bom(bytes, decoded, &repaired);
  check_textual(bytes, "text");
  doc.text = repair_utf8(bytes, &doc.repaired_bytes);
  doc.repaired_bytes += repaired;
  return doc;
}

// ATX heading ("## Title ##"): its level and text, or level 0.
int markdown_heading(std::string_view line, std::string_view* text) {
  std::size_t i = 0;
  while (i < line.size() && i < 3 && line[i] == ' ') ++i;
  std::size_t level = 0;
  while (i + level < line.size() && line[i + level] == '#') ++level;
  if (level == 0 || level > 6) return 0;
  const std::size_t after = i + level;
  if (after < line.size() && line[after] != ' ' && line[after] != '\t') return 0;
  std::string_view rest = trim(line.substr(after));
  while (!rest.empty() && rest.back() == '#') rest.remove_suffix(1);
  *text = trim(rest);
  return static_cast<int>(level);
}

bool is_fence(std::string_view line) {
  const std::string_view t = trim(line);
  return t.starts_with("```") || t.starts_with("~~~");
}

// --- HTML ---------------------------------------------------------------------------------

bool name_in(const xmlChar* name, std::initializer_list<const char*> names) {
  for (const char* n : names) {
    if (xmlStrcasecmp(name, reinterpret_cast<const xmlChar*>(n)) == 0) return true;
  }
  return false;
}

bool html_skipped(const xmlChar* name) {
  return name_in(name, {"script", "style", "noscript", "template", "head", "svg", "iframe",
                        "object", "canvas", "select", "button"});
}

bool html_block(const xmlChar* name) {
  return name_in(
      name, {"p",       "div",    "li",      "ul",      "ol",      "tr",         "table", "section",
             "article", "header", "footer",  "nav",     "aside",   "blockquote", "pre",   "br",
             "hr",      "dd",     "dt",      "dl",      "figure",  "figcaption", "main",  "form",
             "body",    "html",   "address", "details", "summary", "caption",    "h1",    "h2",
             "h3",      "h4",     "h5",      "h6"});
}

int html_heading_level(const xmlChar* name) {
  if (xmlStrlen(name) == 2 && (name[0] == 'h' || name[0] == 'H') && name[1] >= '1' &&
      name[1] <= '6') {
    return name[1] - '0';
  }
  return 0;
}

class HtmlText {
 public:
  explicit HtmlText(LoadedDocument& doc) : builder_(doc) {}

  void text(const char* s) {
    for (const char* p = s; *p != '\0'; ++p) {
      if (is_space(*p)) {
        pending_space_ = !current_.empty();
      } else {
        if (pending_space_) current_ += ' ';
        pending_space_ = false;
        current_ += *p;
      }
    }
  }
  void space() { pending_space_ = !current_.empty(); }
  void flush(int level) {
    builder_.add(current_, level);
    current_.clear();
    pending_space_ = false;
  }

 private:
  Builder builder_;
  std::string current_;
  bool pending_space_ = false;
};

struct XmlDocDeleter {
  void operator()(xmlDoc* d) const { xmlFreeDoc(d); }
};

// --- PDF ------------------------------------------------------------------------------------

void quiet_poppler(const std::string&, void*) {}

struct Word {
  double x0, x1, y0, y1;
  std::string text;
  bool space_after;
  double yc() const { return (y0 + y1) / 2; }
  double h() const { return y1 - y0; }
};

// A run of words on one line that does not cross a column gutter (or, for a full-width line,
// the whole line).
struct Run {
  double x0, x1, y0, y1;
  std::string text;
  bool spanning = false;
  int column = 0;
};

// A page's words in reading order for multi-column layouts: gutters are vertical strips that
// (almost) no line crosses; lines are cut at gutters; full-width lines divide the page into
// bands; each band is read column by column, top to bottom. Blank lines separate paragraphs
// (a column change or a vertical gap of more than 1.2 line heights).
std::string page_text_in_columns(std::vector<Word> words, double page_width) {
  if (words.empty()) return {};
  std::sort(words.begin(), words.end(), [](const Word& a, const Word& b) {
    return a.yc() < b.yc() || (a.yc() == b.yc() && a.x0 < b.x0);
  });
  // Rows: words whose vertical centres are close.
  std::vector<std::vector<Word>> rows;
  for (Word& w : words) {
    if (!rows.empty()) {
      const Word& first = rows.back().front();
      if (std::abs(w.yc() - first.yc()) < 0.4 * std::max(1.0, std::min(w.h(), first.h()))) {
        rows.back().push_back(std::move(w));
        continue;
      }
    }
    rows.push_back({std::move(w)});
  }
  for (auto& r : rows) {
    std::sort(r.begin(), r.end(), [](const Word& a, const Word& b) { return a.x0 < b.x0; });
  }
  // Coverage of each 1-point column of the page by words.
  double xmin = 1e30, xmax = -1e30;
  for (const auto& r : rows) {
    xmin = std::min(xmin, r.front().x0);
    xmax = std::max(xmax, r.back().x1);
  }
  const auto bins =
      static_cast<std::size_t>(std::clamp(std::max(xmax, page_width), 1.0, 5000.0)) + 1;
  std::vector<int> cover(bins, 0);
  auto mark = [&](double a, double b) {
    const auto lo = static_cast<std::size_t>(std::clamp(a, 0.0, double(bins - 1)));
    const auto hi = static_cast<std::size_t>(std::clamp(b, 0.0, double(bins - 1)));
    for (std::size_t x = lo; x <= hi; ++x) ++cover[x];
  };
  // Word boxes only: the spaces inside a column are covered by other lines' words, a gutter is
  // covered by nothing but the few lines that span columns.
  for (const auto& r : rows) {
    for (const Word& w : r) mark(w.x0, w.x1);
  }
  const int peak = *std::max_element(cover.begin(), cover.end());
  // Lines crossing a gutter (titles, author blocks, running heads) stay well under a quarter of
  // the lines of a column.
  const int low = std::max(1, peak / 4);
  std::vector<std::pair<double, double>> gutters;
  const auto first = static_cast<std::size_t>(std::max(0.0, xmin)) + 1;
  const auto last = static_cast<std::size_t>(std::min(double(bins - 1), xmax));
  for (std::size_t x = first; x < last;) {
    if (cover[x] > low) {
      ++x;
      continue;
    }
    std::size_t e = x;
    while (e < last && cover[e] <= low) ++e;
    if (e < last && e - x >= 4 && peak >= 8) gutters.emplace_back(double(x), double(e));
    x = e;
  }
  auto column_of = [&](double xc) {
    int c = 0;
    for (const auto& g : gutters) c += xc > g.second ? 1 : 0;
    return c;
  };
  // Runs: rows cut at gutters; a run crossing a gutter spans columns.
  std::vector<Run> runs;
  for (const auto& r : rows) {
    Run cur{r.front().x0, r.front().x1, r.front().y0, r.front().y1, r.front().text};
    bool space = r.front().space_after;
    auto flush = [&] {
      for (const auto& g : gutters)
        cur.spanning = cur.spanning || (cur.x0 < g.first && cur.x1 > g.second);
      cur.column = column_of((cur.x0 + cur.x1) / 2);
      runs.push_back(std::move(cur));
    };
    for (std::size_t i = 1; i < r.size(); ++i) {
      const Word& w = r[i];
      bool cut = false;
      for (const auto& g : gutters) cut = cut || (cur.x1 <= g.second && w.x0 >= g.first);
      if (cut) {
        flush();
        cur = Run{w.x0, w.x1, w.y0, w.y1, w.text};
      } else {
        if (space || w.x0 - cur.x1 > 0.15 * std::max(1.0, w.h())) cur.text += ' ';
        cur.text += w.text;
        cur.x1 = std::max(cur.x1, w.x1);
        cur.y0 = std::min(cur.y0, w.y0);
        cur.y1 = std::max(cur.y1, w.y1);
      }
      space = w.space_after;
    }
    flush();
  }
  // Bands between spanning runs; inside a band, column by column.
  std::string out;
  const Run* prev = nullptr;
  auto emit = [&](const Run& r) {
    if (prev != nullptr) {
      const bool new_para = prev->column != r.column || prev->spanning != r.spanning ||
                            r.y0 - prev->y1 > 1.2 * std::max(1.0, prev->y1 - prev->y0) ||
                            r.y0 < prev->y0;
      out += new_para ? "\n\n" : "\n";
    }
    out += r.text;
    prev = &r;
  };
  std::size_t band_start = 0;
  const int n_columns = static_cast<int>(gutters.size()) + 1;
  for (std::size_t i = 0; i <= runs.size(); ++i) {
    if (i < runs.size() && !runs[i].spanning) continue;
    for (int c = 0; c < n_columns; ++c) {
      for (std::size_t k = band_start; k < i; ++k) {
        if (runs[k].column == c) emit(runs[k]);
      }
    }
    if (i < runs.size()) emit(runs[i]);
    band_start = i + 1;
  }
  return out;
}

}  // namespace

int LoadedDocument::page_at(std::size_t offset) const {
  if (page_starts.empty()) return 0;
  const auto it = std::upper_bound(page_starts.begin(), page_starts.end(), offset);
  return static_cast<int>(std::max<std::ptrdiff_t>(1, it - page_starts.begin()));
}

std::string repair_utf8(std::string_view s, std::size_t* n_repaired) {
  std::size_t repaired = 0;
  std::string out;
  std::optional<std::size_t> bad = find_invalid_utf8(s);
  if (!bad) {
    out.assign(s);
  } else {
    out.reserve(s.size() + 16);
    while (bad) {
      out.append(s.substr(0, *bad));
      out += "\xEF\xBF\xBD";
      ++repaired;
      s.remove_prefix(*bad + 1);
      bad = find_invalid_utf8(s);
    }
    out.append(s);
  }
  if (n_repaired != nullptr) *n_repaired = repaired;
  return out;
}

std::string kind_for_path(const fs::path& path) {
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (ext == ".txt" || ext == ".text" || ext == ".rst" || ext == ".csv") return "txt";
  if (ext == ".md" || ext == ".markdown") return "md";
  if (ext == ".html" || ext == ".htm" || ext == ".xhtml") return "html";
  if (ext == ".pdf") return "pdf";
  return "";
}

bool looks_like_text(std::string_view head) {
  std::string decoded;
  std::size_t repaired = 0;
  head = decode_bom(head, decoded, &repaired);
  try {
    check_textual(head, "text");
  } catch (const Error&) {
    return false;
  }
  if (!decoded.empty()) return true;  // UTF-16, now valid UTF-8
  // A sample may end inside a character: only what comes before the last three bytes counts.
  const std::optional<std::size_t> bad = find_invalid_utf8(head);
  return !bad || *bad + 4 > head.size();
}

std::string kind_for_file(const fs::path& path) {
  std::string kind = kind_for_path(path);
  if (!kind.empty() || !path.extension().empty()) return kind;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "";
  char head[4096];
  const ssize_t n = ::read(fd, head, sizeof head);
  ::close(fd);
  if (n <= 0) return "";
  return looks_like_text(std::string_view(head, static_cast<std::size_t>(n))) ? "txt" : "";
}

LoadedDocument parse_text(std::string_view bytes) {
  LoadedDocument doc = text_document(bytes, "txt");
  add_paragraphs_in_place(doc, 0, doc.text.size());
  return doc;
}

LoadedDocument parse_markdown(std::string_view bytes) {
  LoadedDocument doc = text_document(bytes, "md");
  const std::string& t = doc.text;
  std::size_t pos = 0;
  std::size_t para_start = 0;  // start of the lines not yet turned into blocks
  bool in_fence = false;
  while (pos < t.size()) {
    std::size_t eol = t.find('\n', pos);
    if (eol == std::string::npos) eol = t.size();
    const std::string_view line(t.data() + pos, eol - pos);
    if (is_fence(line)) in_fence = !in_fence;
    std::string_view heading;
    const int level = in_fence ? 0 : markdown_heading(line, &heading);
    if (level > 0) {
      add_paragraphs_in_place(doc, para_start, pos);
      if (!heading.empty()) {
        const std::size_t b = static_cast<std::size_t>(heading.data() - t.data());
        doc.blocks.push_back({level, b, b + heading.size()});
        if (doc.title.empty()) doc.title = std::string(heading);
      }
      para_start = std::min(eol + 1, t.size());
    }
    pos = eol + 1;
  }
  add_paragraphs_in_place(doc, para_start, t.size());
  return doc;
}

LoadedDocument parse_html(std::string_view bytes) {
  LoadedDocument doc;
  doc.kind = "html";
  if (bytes.size() > static_cast<std::size_t>(INT32_MAX)) {
    throw Error(ErrorCode::kUnsupported, "HTML file too large");
  }
  std::string decoded;
  std::size_t bom_repaired = 0;
  bytes = decode_bom(bytes, decoded, &bom_repaired);
  check_textual(bytes, "HTML");
  const char* encoding = is_valid_utf8(bytes) ? "UTF-8" : nullptr;
  // XML_PARSE_HUGE lifts libxml2's limit of 256 nested elements, past which it drops the rest
  // of the text (400 unclosed <font> tags); the walk below needs no stack.
  std::unique_ptr<xmlDoc, XmlDocDeleter> html(
      htmlReadMemory(bytes.data(), static_cast<int>(bytes.size()), nullptr, encoding,
                     HTML_PARSE_RECOVER | HTML_PARSE_NOERROR | HTML_PARSE_NOWARNING |
                         HTML_PARSE_NONET | HTML_PARSE_COMPACT | XML_PARSE_HUGE));
  if (!html) throw Error(ErrorCode::kFormat, "not readable as HTML");
  xmlNode* root = xmlDocGetRootElement(html.get());
  HtmlText out(doc);
  std::string title;
  for (xmlNode* h = root != nullptr ? root->children : nullptr; h != nullptr; h = h->next) {
    if (h->type != XML_ELEMENT_NODE || !name_in(h->name, {"head"})) continue;
    for (xmlNode* t = h->children; t != nullptr; t = t->next) {
      if (t->type != XML_ELEMENT_NODE || !name_in(t->name, {"title"})) continue;
      xmlChar* content = xmlNodeGetContent(t);
      if (content != nullptr) {
        title = std::string(trim(reinterpret_cast<const char*>(content)));
        xmlFree(content);
      }
      break;
    }
  }
  // Iterative walk: deeply nested documents must not exhaust the stack.
  xmlNode* node = root;
  while (node != nullptr) {
    bool descend = false;
    if (node->type == XML_ELEMENT_NODE) {
      if (!html_skipped(node->name)) {
        if (html_block(node->name)) out.flush(0);
        if (name_in(node->name, {"td", "th"})) out.space();
        descend = node->children != nullptr;
      }
    } else if (node->type == XML_TEXT_NODE || node->type == XML_CDATA_SECTION_NODE) {
      if (node->content != nullptr) out.text(reinterpret_cast<const char*>(node->content));
    }
    if (descend) {
      node = node->children;
      continue;
    }
    // Leave this node and every ancestor whose children are done.
    while (node != nullptr) {
      if (node->type == XML_ELEMENT_NODE && !html_skipped(node->name)) {
        if (const int level = html_heading_level(node->name); level > 0) {
          out.flush(level);
        } else if (html_block(node->name)) {
          out.flush(0);
        }
      }
      if (node == root) {
        node = nullptr;
        break;
      }
      if (node->next != nullptr) {
        node = node->next;
        break;
      }
      node = node->parent;
    }
  }
  out.flush(0);
  if (!title.empty()) {
    // The <title> leads the heading paths, so it is indexed with every chunk, unless the first
    // heading already says the same.
    const auto first = std::find_if(doc.blocks.begin(), doc.blocks.end(),
                                    [](const Block& b) { return b.heading_level > 0; });
    doc.title_in_headings = first == doc.blocks.end() ||
                            doc.text.substr(first->begin, first->end - first->begin) != title;
    doc.title = title;
  }
  std::size_t repaired = 0;
  doc.text = repair_utf8(doc.text, &repaired);
  doc.repaired_bytes = repaired + bom_repaired;
  if (repaired > 0) {
    // Offsets shift when bytes are replaced: rebuild the blocks from scratch on the clean text.
    LoadedDocument clean = parse_text(doc.text);
    clean.kind = "html";
    clean.title = doc.title;
    clean.title_in_headings = doc.title_in_headings;
    clean.repaired_bytes = doc.repaired_bytes;
    return clean;
  }
  return doc;
}

LoadedDocument parse_pdf(std::string_view bytes) {
  poppler::set_debug_error_function(quiet_poppler, nullptr);
  if (bytes.size() > static_cast<std::size_t>(INT32_MAX)) {
    throw Error(ErrorCode::kUnsupported, "PDF file too large");
  }
  std::unique_ptr<poppler::document> pdf(
      poppler::document::load_from_raw_data(bytes.data(), static_cast<int>(bytes.size())));
  if (!pdf) {
    if (bytes.size() >= 5 && std::memcmp(bytes.data(), "%PDF-", 5) == 0 &&
        std::string_view(bytes).find("/Encrypt") != std::string_view::npos) {
      throw Error(ErrorCode::kUnsupported, "encrypted PDF: a password is needed to read it");
    }
    throw Error(ErrorCode::kFormat, "corrupt or not a PDF (poppler cannot open it)");
  }
  if (pdf->is_locked()) {
    throw Error(ErrorCode::kUnsupported, "encrypted PDF: a password is needed to read it");
  }
  LoadedDocument doc;
  doc.kind = "pdf";
  const int n_pages = pdf->pages();
  for (int i = 0; i < n_pages; ++i) {
    std::unique_ptr<poppler::page> page(pdf->create_page(i));
    std::string page_text;
    if (page) {
      std::vector<Word> words;
      std::string rotated;  // sideways text (margins, stamps) is kept apart, after the page
      for (const poppler::text_box& box : page->text_list()) {
        const poppler::rectf b = box.bbox();
        const poppler::byte_array utf8 = box.text().to_utf8();
        if (utf8.empty()) continue;
        std::string word(utf8.begin(), utf8.end());
        if (box.rotation() != 0) {
          rotated += word;
          if (box.has_space_after()) rotated += ' ';
          continue;
        }
        words.push_back(
            {b.left(), b.right(), b.top(), b.bottom(), std::move(word), box.has_space_after()});
      }
      page_text = page_text_in_columns(std::move(words), page->page_rect().width());
      if (!rotated.empty()) page_text += "\n\n" + rotated;
    }
    std::size_t repaired = 0;
    page_text = repair_utf8(page_text, &repaired);
    doc.repaired_bytes += repaired;
    if (!doc.text.empty()) doc.text += "\n\n";
    doc.page_starts.push_back(doc.text.size());
    const std::size_t from = doc.text.size();
    doc.text += page_text;
    add_paragraphs_in_place(doc, from, doc.text.size());
  }
  if (pdf->info_key("Title").length() > 0) {
    const poppler::byte_array t = pdf->info_key("Title").to_utf8();
    doc.title = repair_utf8(std::string_view(t.data(), t.size()), nullptr);
  }
  return doc;
}

LoadedDocument load_document(const fs::path& path, const LoadOptions& options) {
  const std::string kind = kind_for_file(path);
  const std::string name = path.string();
  if (kind.empty()) {
    throw Error(ErrorCode::kUnsupported,
                std::string("unsupported file type (supported: ") + kSupportedTypes + ")",
                {.file = name});
  }
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  if (ec) throw Error(ErrorCode::kIo, "cannot read: " + ec.message(), {.file = name});
  if (size > options.max_file_bytes) {
    throw Error(ErrorCode::kUnsupported,
                "file is " + std::to_string(size >> 20) + " MiB, over the " +
                    std::to_string(options.max_file_bytes >> 20) +
                    " MiB limit (--max-file-size); skipped",
                {.file = name});
  }
  try {
    if (size == 0) {
      LoadedDocument empty;
      empty.kind = kind;
      return empty;
    }
    const MappedFile file = MappedFile::open(path);
    const std::string_view bytes(reinterpret_cast<const char*>(file.bytes().data()), file.size());
    if (kind == "md") return parse_markdown(bytes);
    if (kind == "html") return parse_html(bytes);
    if (kind == "pdf") return parse_pdf(bytes);
    return parse_text(bytes);
  } catch (const Error& e) {
    if (e.where().file.empty()) throw e.with_file(name);
    throw;
  }
}

namespace {

bool glob_here(std::string_view p, std::string_view s) {
  while (!p.empty()) {
    if (p.starts_with("**")) {
      std::string_view rest = p.substr(2);
      if (rest.starts_with("/")) rest.remove_prefix(1);
      for (std::size_t i = 0; i <= s.size(); ++i) {
        if ((i == 0 || s[i - 1] == '/') && glob_here(rest, s.substr(i))) return true;
        if (rest.empty()) return true;
      }
      return false;
    }
    const char c = p.front();
    if (c == '*') {
      const std::string_view rest = p.substr(1);
      for (std::size_t i = 0; i <= s.size(); ++i) {
        if (glob_here(rest, s.substr(i))) return true;
        if (i < s.size() && s[i] == '/') break;
      }
      return false;
    }
    if (s.empty()) return false;
    if (c == '?') {
      if (s.front() == '/') return false;
    } else if (c == '[') {
      const std::size_t close = p.find(']', 2);
      if (close == std::string_view::npos) {
        if (s.front() != '[') return false;
      } else {
        std::string_view set = p.substr(1, close - 1);
        const bool negate = !set.empty() && (set.front() == '!' || set.front() == '^');
        if (negate) set.remove_prefix(1);
        bool hit = false;
        for (std::size_t i = 0; i < set.size(); ++i) {
          if (i + 2 < set.size() && set[i + 1] == '-') {
            hit = hit || (s.front() >= set[i] && s.front() <= set[i + 2]);
            i += 2;
          } else {
            hit = hit || s.front() == set[i];
          }
        }
        if (hit == negate || s.front() == '/') return false;
        p.remove_prefix(close);
      }
    } else if (c != s.front()) {
      return false;
    }
    p.remove_prefix(1);
    s.remove_prefix(1);
  }
  return s.empty();
}

bool matches_any(const std::vector<std::string>& globs, const fs::path& rel) {
  const std::string path = rel.generic_string();
  const std::string name = rel.filename().string();
  for (const std::string& g : globs) {
    if (glob_match(g, path) || glob_match(g, name)) return true;
  }
  return false;
}

}  // namespace

bool glob_match(std::string_view pattern, std::string_view path) {
  if (pattern.find('/') == std::string_view::npos) {
    const std::size_t slash = path.rfind('/');
    if (slash != std::string_view::npos) path.remove_prefix(slash + 1);
  }
  return glob_here(pattern, path);
}

std::vector<fs::path> collect_files(const std::vector<fs::path>& roots,
                                    const CollectOptions& options,
                                    std::vector<std::string>* warnings, CollectReport* report) {
  std::vector<fs::path> files;
  CollectReport found;
  std::vector<std::string> unsupported;  // the first few, for the message
  auto warn = [&](const std::string& w) {
    if (warnings != nullptr) warnings->push_back(w);
  };
  auto skip_unsupported = [&](const fs::path& shown) {
    if (++found.unsupported <= 3) unsupported.push_back(printable(shown.string(), 100));
  };
  for (const fs::path& root : roots) {
    RootReport& rr = found.roots.emplace_back();
    rr.root = root;
    const std::string shown_root = printable(root.string(), 200);
    std::error_code ec;
    const fs::file_status st = fs::status(root, ec);
    if (!fs::exists(st)) {
      const bool unknown =
          ec && ec != std::errc::no_such_file_or_directory && ec != std::errc::not_a_directory;
      warn(shown_root + (unknown ? ": cannot access: " + ec.message() : ": not found"));
      rr.complete = !unknown;
      continue;
    }
    if (!fs::is_directory(st)) {
      rr.state = RootReport::State::kFile;
      if (matches_any(options.exclude, root.filename())) continue;
      if (kind_for_file(root).empty()) {
        skip_unsupported(root);
      } else {
        files.push_back(root);
        ++rr.files;
      }
      continue;
    }
    rr.state = RootReport::State::kFolder;
    const fs::path real_root = fs::canonical(root, ec);
    std::vector<fs::path> folders = {root};
    while (!folders.empty()) {
      const fs::path folder = std::move(folders.back());
      folders.pop_back();
      fs::directory_iterator it(folder, ec);
      if (ec) {
        warn(printable(folder.string(), 200) + ": cannot list: " + ec.message());
        rr.complete = false;
        continue;
      }
      for (; it != fs::directory_iterator(); it.increment(ec)) {
        if (ec) break;  // the increment failed: reported below
        const fs::path& p = it->path();
        if (p.filename().string().starts_with(".")) continue;
        const fs::file_status ls = it->symlink_status(ec);
        if (ec) {
          warn(printable(p.string(), 200) + ": cannot read: " + ec.message());
          rr.complete = false;
          continue;
        }
        if (fs::is_directory(ls)) {
          folders.push_back(p);
          continue;
        }
        if (fs::is_symlink(ls)) {
          const fs::file_status target = fs::status(p, ec);
          if (fs::is_directory(target)) continue;  // symlinked folders are not followed
          if (!fs::exists(target)) {
            ++found.symlinks;
            warn(printable(p.string(), 200) + ": broken symlink, skipped");
            continue;
          }
          if (!fs::is_regular_file(target)) continue;
          const fs::path real = fs::canonical(p, ec);
          const fs::path inside = real.lexically_relative(real_root);
          if (!options.follow_symlinks &&
              (ec || real_root.empty() || inside.empty() || *inside.begin() == "..")) {
            ++found.symlinks;
            warn(printable(p.string(), 200) + ": symlink to " + printable(real.string(), 200) +
                 ", outside " + shown_root + ", skipped (--follow-symlinks reads it)");
            continue;
          }
        } else if (!fs::is_regular_file(ls)) {
          continue;  // sockets, pipes, devices
        }
        const fs::path rel = p.lexically_relative(root);
        if (!options.include.empty() && !matches_any(options.include, rel)) continue;
        if (matches_any(options.exclude, rel)) continue;
        if (kind_for_file(p).empty()) {
          skip_unsupported(rel);
          continue;
        }
        files.push_back(p);
        ++rr.files;
      }
      if (ec) {
        warn(printable(folder.string(), 200) + ": cannot list: " + ec.message());
        rr.complete = false;
      }
    }
  }
  if (found.unsupported > 0) {
    std::string names;
    for (const std::string& n : unsupported) names += (names.empty() ? "" : ", ") + n;
    if (found.unsupported > unsupported.size()) {
      names += " and " + std::to_string(found.unsupported - unsupported.size()) + " more";
    }
    warn(std::to_string(found.unsupported) + " file(s) of unsupported types skipped: " + names +
         " (supported: " + kSupportedTypes + ")");
  }
  std::sort(files.begin(), files.end());
  files.erase(std::unique(files.begin(), files.end()), files.end());
  if (report != nullptr) *report = std::move(found);
  return files;
}

}  // namespace hearth::rag
