// The request parsers of hearth-server on good and hostile bodies: every refusal is a 400 naming
// the field, nothing else escapes them.
#include <gtest/gtest.h>

#include <string>

#include "hearth/serve/api.hpp"

namespace hearth::serve {
namespace {

TEST(ServeApi, ChatRequestTakesOpenAIsFields) {
  const auto p = parse_chat_request(R"({
    "model": "m", "messages": [
      {"role": "developer", "content": "be brief"},
      {"role": "user", "content": [{"type": "text", "text": "hel"}, {"type": "text", "text": "lo"}]},
      {"role": "assistant", "content": null}, {"role": "user", "content": "again"}],
    "temperature": 0.5, "top_p": 0.9, "max_completion_tokens": 7, "max_tokens": 99,
    "stop": ["a", "b"], "seed": -3, "stream": true, "stream_options": {"include_usage": true},
    "n": 1, "user": "x", "vendor_extension": {"anything": [1, 2]}})");
  ASSERT_TRUE(p.ok()) << p.error.message;
  const ChatRequest& r = *p.value;
  EXPECT_EQ(r.model, "m");
  ASSERT_EQ(r.messages.size(), 4U);
  EXPECT_EQ(r.messages[0].role, "system");
  EXPECT_EQ(r.messages[1].content, "hello");
  EXPECT_EQ(r.messages[2].content, "");
  EXPECT_FLOAT_EQ(r.sampling.temperature, 0.5f);
  EXPECT_FLOAT_EQ(r.sampling.top_p, 0.9f);
  EXPECT_EQ(r.max_tokens, 7);  // max_completion_tokens wins over the older max_tokens
  EXPECT_EQ(r.stop, (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(r.seeded);
  EXPECT_EQ(r.sampling.seed, static_cast<std::uint64_t>(-3));
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
  EXPECT_TRUE(r.bank.empty());

  const auto d = parse_chat_request(R"({"messages": [{"role": "user", "content": "hi"}]})");
  ASSERT_TRUE(d.ok());
  EXPECT_FLOAT_EQ(d.value->sampling.temperature, 1.0f);  // OpenAI's default
  EXPECT_FALSE(d.value->max_tokens.has_value());
  EXPECT_FALSE(d.value->seeded);
  EXPECT_EQ(parse_chat_request(R"({"messages":[{"role":"user","content":"x"}],"stop":"END"})")
                .value->stop,
            std::vector<std::string>{"END"});
}

// Every hostile body is refused with a 400 and, where one field is to blame, its name.
TEST(ServeApi, HostileChatBodiesAreRefusedNamingTheField) {
  struct Case {
    std::string body;
    std::string param;  // "" = no single field
  };
  const std::string deep = std::string(100, '[') + std::string(100, ']');
  const std::string deep_in_field =
      R"({"messages":)" + std::string(70, '[') + std::string(70, ']') + "}";
  const Case cases[] = {
      {"", ""},
      {"{", ""},
      {"[]", ""},
      {"null", ""},
      {"\"text\"", ""},
      {deep, ""},
      {deep_in_field, ""},
      {"{\"messages\": [{\"role\": \"user\", \"content\": \"\xff\xfe\"}]}", ""},      // bad UTF-8
      {"{\"messages\": [{\"role\": \"user\", \"content\": \"\xed\xa0\x80\"}]}", ""},  // surrogate
      {R"({"messages": [{"role":"user","content":"a"}]} trailing)", ""},
      {R"({})", "messages"},
      {R"({"messages": []})", "messages"},
      {R"({"messages": "hi"})", "messages"},
      {R"({"messages": [1]})", "messages[0]"},
      {R"({"messages": [{"content": "x"}]})", "messages[0]"},
      {R"({"messages": [{"role": "wizard", "content": "x"}]})", "messages[0].role"},
      {R"({"messages": [{"role": "user", "content": 5}]})", "messages[0].content"},
      {R"({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]})",
       "messages[0].content"},
      {R"({"messages": [{"role":"user","content":"a"}], "model": 7})", "model"},
      {R"({"messages": [{"role":"user","content":"a"}], "temperature": "hot"})", "temperature"},
      {R"({"messages": [{"role":"user","content":"a"}], "temperature": -1})", "temperature"},
      {R"({"messages": [{"role":"user","content":"a"}], "temperature": 1e999})", ""},
      {R"({"messages": [{"role":"user","content":"a"}], "top_p": 0})", "top_p"},
      {R"({"messages": [{"role":"user","content":"a"}], "max_tokens": -5})", "max_tokens"},
      {R"({"messages": [{"role":"user","content":"a"}], "max_tokens": 0})", "max_tokens"},
      {R"({"messages": [{"role":"user","content":"a"}], "max_tokens": 2.5})", "max_tokens"},
      {R"({"messages": [{"role":"user","content":"a"}], "max_tokens": 18446744073709551615})",
       "max_tokens"},
      {R"({"messages": [{"role":"user","content":"a"}], "max_completion_tokens": 1000000000})",
       "max_completion_tokens"},
      {R"({"messages": [{"role":"user","content":"a"}], "stop": [1]})", "stop"},
      {R"({"messages": [{"role":"user","content":"a"}], "stop": ["a","b","c","d","e"]})", "stop"},
      {R"({"messages": [{"role":"user","content":"a"}], "stop": [""]})", "stop"},
      {R"({"messages": [{"role":"user","content":"a"}], "stream": "yes"})", "stream"},
      {R"({"messages": [{"role":"user","content":"a"}], "stream_options": 1})", "stream_options"},
      {R"({"messages": [{"role":"user","content":"a"}], "n": 2})", "n"},
      {R"({"messages": [{"role":"user","content":"a"}], "logprobs": true})", "logprobs"},
      {R"({"messages": [{"role":"user","content":"a"}], "tools": [{"type":"function"}]})", "tools"},
      {R"({"messages": [{"role":"user","content":"a"}], "presence_penalty": 1})",
       "presence_penalty"},
      {R"({"messages": [{"role":"user","content":"a"}], "seed": "1"})", "seed"},
      {R"({"messages": [{"role":"user","content":"a"}], "bank": "../etc"})", "bank"},
      {R"({"messages": [{"role":"user","content":"a"}], "bank": "/abs"})", "bank"},
      {"{\"messages\": [{\"role\":\"user\",\"content\":\"a\"}], \"bank\": \"a\\u0000b\"}", "bank"},
      {R"({"messages": [{"role":"assistant","content":"a"}], "bank": "notes"})", "messages"},
  };
  for (const Case& c : cases) {
    const auto p = parse_chat_request(c.body);
    EXPECT_FALSE(p.ok()) << c.body;
    EXPECT_EQ(p.error.status, 400) << c.body;
    EXPECT_EQ(p.error.type, "invalid_request_error") << c.body;
    EXPECT_FALSE(p.error.message.empty()) << c.body;
    if (!c.param.empty()) {
      EXPECT_EQ(p.error.param, c.param) << c.body;
    }
  }
  Limits tight;
  tight.max_tokens = 10;
  EXPECT_FALSE(
      parse_chat_request(R"({"messages":[{"role":"user","content":"a"}],"max_tokens":11})", tight)
          .ok());
}

TEST(ServeApi, ErrorObjectsHaveOpenAIsShape) {
  const nlohmann::json j = error_json(bad_request("wrong", "temperature"));
  EXPECT_EQ(j["error"]["message"], "wrong");
  EXPECT_EQ(j["error"]["type"], "invalid_request_error");
  EXPECT_EQ(j["error"]["param"], "temperature");
  EXPECT_TRUE(j["error"]["code"].is_null());
  EXPECT_EQ(unauthorized().status, 401);
  EXPECT_EQ(too_large(10).status, 413);
  EXPECT_EQ(busy("x").status, 429);
  EXPECT_EQ(unavailable("x").status, 503);
  EXPECT_EQ(not_found("x", "model_not_found").code, "model_not_found");
  // A message holding invalid UTF-8 (echoed user text) still serialises.
  EXPECT_NE(error_body(bad_request("bad \xff byte")).find("bad"), std::string::npos);
}

TEST(ServeApi, CompletionPromptIsTextOrTokenIds) {
  EXPECT_EQ(parse_completion_request(R"({"prompt": "Once"})").value->prompt, "Once");
  EXPECT_EQ(parse_completion_request(R"({"prompt": ["Once"]})").value->prompt, "Once");
  EXPECT_EQ(parse_completion_request(R"({"prompt": [1, 2, 3]})").value->prompt_ids,
            (std::vector<std::int32_t>{1, 2, 3}));
  for (const char* bad : {R"({})", R"({"prompt": 5})", R"({"prompt": ["a", "b"]})",
                          R"({"prompt": [1, -2]})", R"({"prompt": [1, 99999999999]})",
                          R"({"prompt": [1, "a"]})", R"({"prompt": "a", "echo": true})"}) {
    const auto p = parse_completion_request(bad);
    EXPECT_FALSE(p.ok()) << bad;
    EXPECT_EQ(p.error.status, 400) << bad;
  }
}

TEST(ServeApi, EmbeddingAndRerankRequests) {
  const auto e = parse_embedding_request(R"({"input": ["a", "b"], "encoding_format": "base64"})");
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e.value->input.size(), 2U);
  EXPECT_TRUE(e.value->base64);
  EXPECT_EQ(parse_embedding_request(R"({"input": "one"})").value->input.size(), 1U);
  for (const char* bad :
       {R"({})", R"({"input": []})", R"({"input": [1, 2]})",
        R"({"input": "a", "encoding_format": "int8"})", R"({"input": "a", "dimensions": 8})"}) {
    EXPECT_FALSE(parse_embedding_request(bad).ok()) << bad;
  }
  Limits few;
  few.max_inputs = 2;
  EXPECT_FALSE(parse_embedding_request(R"({"input": ["a", "b", "c"]})", few).ok());

  const auto r = parse_rerank_request(
      R"({"query": "q", "documents": ["a", {"text": "b"}], "top_n": 1, "return_documents": false})");
  ASSERT_TRUE(r.ok()) << r.error.message;
  EXPECT_EQ(r.value->documents, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(r.value->top_n, 1U);
  EXPECT_FALSE(r.value->return_documents);
  for (const char* bad :
       {R"({"documents": ["a"]})", R"({"query": "q"})", R"({"query": "q", "documents": "a"})",
        R"({"query": "q", "documents": ["a"], "top_n": 0})",
        R"({"query": "q", "documents": ["a"], "top_n": -1})"}) {
    EXPECT_FALSE(parse_rerank_request(bad).ok()) << bad;
  }
}

TEST(ServeApi, BankRequestsRefusePathTricks) {
  EXPECT_TRUE(is_safe_name("notes.md"));
  EXPECT_TRUE(is_safe_name("Überblick 2024.pdf"));
  for (const std::string& bad :
       {std::string(""), std::string("."), std::string(".."), std::string("../x"),
        std::string("/etc/passwd"), std::string("a/b"), std::string("a\\b"), std::string("a\0b", 3),
        std::string(".hidden"), std::string("x*"), std::string("[a]"), std::string("a\nb"),
        std::string("\xff"), std::string(300, 'a')}) {
    EXPECT_FALSE(is_safe_name(bad)) << bad;
  }
  const auto up = parse_upload_request(
      R"({"documents": [{"name": "a.md", "content": "# A"}, {"name": "b.txt", "content_base64": "aGk="}]})");
  ASSERT_TRUE(up.ok()) << up.error.message;
  EXPECT_EQ(up.value->files[1].bytes, "hi");
  for (const char* bad : {
           R"({"documents": [{"name": "../a.md", "content": "x"}]})",
           R"({"documents": [{"name": "/tmp/a.md", "content": "x"}]})",
           R"({"documents": [{"name": "a\u0000.md", "content": "x"}]})",
           R"({"documents": [{"name": "..", "content": "x"}]})",
           R"({"documents": [{"name": "a.md"}]})",
           R"({"documents": [{"name": "a.md", "content": "x", "content_base64": "eA=="}]})",
           R"({"documents": [{"name": "a.md", "content_base64": "not base64!"}]})",
           R"({"documents": [{"name": "a.md", "content": "x"}, {"name": "a.md", "content": "y"}]})",
           R"({"documents": []})",
           R"({"documents": "a.md"})",
       }) {
    const auto p = parse_upload_request(bad);
    EXPECT_FALSE(p.ok()) << bad;
    EXPECT_EQ(p.error.status, 400) << bad;
  }
  EXPECT_TRUE(parse_remove_request(R"({"paths": "/b/uploads/a.md"})").ok());
  EXPECT_FALSE(parse_remove_request(R"({"paths": ["*"]})").ok());
  EXPECT_FALSE(parse_remove_request(R"({"paths": [""]})").ok());
  EXPECT_FALSE(parse_bank_search_request(R"({"query": ""})").ok());
  EXPECT_FALSE(parse_bank_search_request(R"({"query": "q", "top_k": 100000})").ok());
  EXPECT_FALSE(parse_bank_search_request(R"({"query": "q", "mode": "magic"})").ok());
  EXPECT_EQ(parse_bank_search_request(R"({"query": "q", "top_k": 3})").value->top_k, 3U);
}

TEST(ServeApi, Base64RoundTripsAndRefusesMalformedText) {
  for (const std::string& s :
       {std::string(""), std::string("f"), std::string("fo"), std::string("foo"),
        std::string("foob"), std::string("\0\xff\x10", 3)}) {
    EXPECT_EQ(base64_decode(base64_encode(s)), s);
  }
  EXPECT_EQ(base64_encode("foobar"), "Zm9vYmFy");
  EXPECT_EQ(base64_encode("fo"), "Zm8=");
  for (const char* bad : {"Zm8", "Zm8==", "Z===", "Zm9v!mFy", "=Zm8", "Zm=v", "Zm9=", "Zh=="}) {
    EXPECT_FALSE(base64_decode(bad).has_value()) << bad;
  }
}

TEST(ServeApi, ResponseObjects) {
  const auto c = chat_completion_json("id1", 5, "m", "hi", "stop", {3, 1});
  EXPECT_EQ(c["object"], "chat.completion");
  EXPECT_EQ(c["choices"][0]["message"]["content"], "hi");
  EXPECT_EQ(c["usage"]["total_tokens"], 4);
  const std::string role = "assistant";
  const auto first = chat_chunk_json("id1", 5, "m", &role, nullptr, nullptr);
  EXPECT_EQ(first["choices"][0]["delta"]["role"], "assistant");
  EXPECT_TRUE(first["choices"][0]["finish_reason"].is_null());
  EXPECT_EQ(sse(nlohmann::json{{"a", 1}}), "data: {\"a\":1}\n\n");
  EXPECT_STREQ(finish_reason(models::FinishReason::kContext), "length");
}

TEST(ServeApi, ImageRequestTakesOpenAIsFieldsAndHearths) {
  const auto p = parse_image_request(R"({
    "model": "dall-e-3", "prompt": "a lighthouse at dawn", "n": 3, "size": "1024x768",
    "response_format": "b64_json", "quality": "hd", "style": "vivid", "user": "u",
    "seed": 7, "steps": 2, "guidance": 3.5, "t5_max_length": 16, "output_format": "png"})");
  ASSERT_TRUE(p.ok()) << p.error.message;
  const ImageRequest& r = *p.value;
  EXPECT_EQ(r.model, "dall-e-3");
  EXPECT_EQ(r.prompt, "a lighthouse at dawn");
  EXPECT_EQ(r.n, 3);
  EXPECT_EQ(r.width, 1024);
  EXPECT_EQ(r.height, 768);
  EXPECT_EQ(r.seed, 7U);
  EXPECT_EQ(r.steps, 2);
  ASSERT_TRUE(r.guidance.has_value());
  EXPECT_FLOAT_EQ(*r.guidance, 3.5f);
  EXPECT_EQ(r.t5_max_length, 16U);

  // The defaults: one 512x512 image, b64_json, the pipeline's steps, a drawn seed.
  for (const char* body : {R"({"prompt": "x"})", R"({"prompt": "x", "size": "auto", "n": null})"}) {
    const auto d = parse_image_request(body);
    ASSERT_TRUE(d.ok()) << d.error.message;
    EXPECT_EQ(d.value->n, 1);
    EXPECT_EQ(d.value->width, kDefaultImageSide);
    EXPECT_EQ(d.value->height, kDefaultImageSide);
    EXPECT_FALSE(d.value->seed.has_value());
    EXPECT_FALSE(d.value->steps.has_value());
    EXPECT_FALSE(d.value->guidance.has_value());
    EXPECT_FALSE(d.value->t5_max_length.has_value());
  }
  // OpenAI's sizes are all multiples of 16.
  for (const char* size : {"256x256", "512x512", "1024x1024", "1792x1024", "1024x1536"}) {
    EXPECT_TRUE(parse_image_request(std::string(R"({"prompt":"x","size":")") + size + "\"}").ok())
        << size;
  }
  Limits more;
  more.max_images = 10;
  EXPECT_EQ(parse_image_request(R"({"prompt": "x", "n": 10})", more).value->n, 10);
}

TEST(ServeApi, HostileImageBodiesAreRefusedNamingTheField) {
  struct Case {
    std::string body;
    std::string param;
  };
  const Case cases[] = {
      {"", ""},
      {"[]", ""},
      {R"({})", "prompt"},
      {R"({"prompt": null})", "prompt"},
      {R"({"prompt": 7})", "prompt"},
      {R"({"prompt": ["a"]})", "prompt"},
      {R"({"prompt": ""})", "prompt"},
      {R"({"prompt": "x", "model": 3})", "model"},
      {R"({"prompt": "x", "n": 0})", "n"},
      {R"({"prompt": "x", "n": -1})", "n"},
      {R"({"prompt": "x", "n": 5})", "n"},
      {R"({"prompt": "x", "n": 99999999999999999999})", "n"},
      {R"({"prompt": "x", "n": 1.5})", "n"},
      {R"({"prompt": "x", "n": "2"})", "n"},
      {R"({"prompt": "x", "size": 512})", "size"},
      {R"({"prompt": "x", "size": "512"})", "size"},
      {R"({"prompt": "x", "size": "512x"})", "size"},
      {R"({"prompt": "x", "size": "x512"})", "size"},
      {R"({"prompt": "x", "size": "100x100"})", "size"},
      {R"({"prompt": "x", "size": "0x0"})", "size"},
      {R"({"prompt": "x", "size": "8x8"})", "size"},
      {R"({"prompt": "x", "size": "-16x16"})", "size"},
      {R"({"prompt": "x", "size": "512X512"})", "size"},
      {R"({"prompt": "x", "size": " 512x512"})", "size"},
      {R"({"prompt": "x", "size": "512x512x512"})", "size"},
      {R"({"prompt": "x", "size": "4112x16"})", "size"},
      {R"({"prompt": "x", "size": "99999999999999999999x16"})", "size"},
      {R"({"prompt": "x", "size": "4096x4096"})", "size"},  // 16 MP: over the 4 MP limit
      {R"({"prompt": "x", "response_format": "url"})", "response_format"},
      {R"({"prompt": "x", "response_format": "json"})", "response_format"},
      {R"({"prompt": "x", "response_format": true})", "response_format"},
      {R"({"prompt": "x", "output_format": "jpeg"})", "output_format"},
      {R"({"prompt": "x", "stream": true})", "stream"},
      {R"({"prompt": "x", "seed": -1})", "seed"},
      {R"({"prompt": "x", "seed": "7"})", "seed"},
      {R"({"prompt": "x", "steps": 0})", "steps"},
      {R"({"prompt": "x", "steps": 101})", "steps"},
      {R"({"prompt": "x", "guidance": -1})", "guidance"},
      {R"({"prompt": "x", "guidance": "high"})", "guidance"},
      {R"({"prompt": "x", "t5_max_length": 1})", "t5_max_length"},
      {R"({"prompt": "x", "t5_max_length": 513})", "t5_max_length"},
  };
  const std::string long_prompt = R"({"prompt": ")" + std::string(32001, 'a') + "\"}";
  EXPECT_EQ(parse_image_request(long_prompt).error.param, "prompt");
  EXPECT_TRUE(parse_image_request(R"({"prompt": ")" + std::string(32000, 'a') + "\"}").ok());
  for (const Case& c : cases) {
    const auto p = parse_image_request(c.body);
    ASSERT_FALSE(p.ok()) << c.body;
    EXPECT_EQ(p.error.status, 400) << c.body;
    EXPECT_FALSE(p.error.message.empty()) << c.body;
    EXPECT_EQ(p.error.param, c.param) << c.body << ": " << p.error.message;
  }
  const auto url = parse_image_request(R"({"prompt": "x", "response_format": "url"})");
  EXPECT_NE(url.error.message.find("b64_json"), std::string::npos) << url.error.message;
}

TEST(ServeApi, ImagesResponseIsOpenAIsShape) {
  const auto j = images_json(1700000000, {"AAAA", "BBBB"}, {7, 8}, 64, 32, {0.5, 3.0});
  EXPECT_EQ(j["created"], 1700000000);
  ASSERT_EQ(j["data"].size(), 2U);
  EXPECT_EQ(j["data"][0]["b64_json"], "AAAA");
  EXPECT_EQ(j["data"][1]["seed"], 8);
  EXPECT_EQ(j["size"], "64x32");
  EXPECT_EQ(j["output_format"], "png");
  EXPECT_DOUBLE_EQ(j["timings"]["per_image_seconds"].get<double>(), 1.5);
  EXPECT_DOUBLE_EQ(j["timings"]["queue_seconds"].get<double>(), 0.5);
}

}  // namespace
}  // namespace hearth::serve
