// The OpenAI API's request and response shapes, without sockets.
//
// The HTTP layer (crucible-cli serve) hands a request body to
// parse_completion_request and gets back either a CompletionRequest or an
// ApiError: the status and the {"error": {"message", "type", "param", "code"}}
// object the OpenAI API answers bad requests with, which its clients turn into
// exceptions. Responses and server-sent-event chunks are built here too, so
// every field a client reads is tested without a server.
//
// Supported: POST /v1/chat/completions and /v1/completions with stream,
// stream_options.include_usage, max_tokens (max_completion_tokens), temperature,
// top_p, stop, seed, n = 1, presence_penalty; and the extensions local servers
// commonly accept: top_k, min_p, repetition_penalty, ignore_eos.
#pragma once

#include "core/generate/chat_template.h"
#include "core/generate/sampler.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace crucible::serve {

struct ApiError {
    int status = 400;
    std::string type = "invalid_request_error";
    std::string message;
    std::string param;   // the request field at fault, empty for none
    std::string code;    // machine-readable: "model_not_found", "context_length_exceeded", ...

    nlohmann::json to_json() const;   // {"error": {...}}
};

// Thrown by the parsing and checking functions below.
class ApiException : public std::runtime_error {
public:
    explicit ApiException(ApiError e) : std::runtime_error(e.message), m_error(std::move(e)) {}
    const ApiError& error() const { return m_error; }

private:
    ApiError m_error;
};

ApiError bad_request(std::string message, std::string param = {}, std::string code = {});

enum class Endpoint { chat, completion };

struct CompletionRequest {
    Endpoint endpoint = Endpoint::completion;
    std::string model;
    std::vector<ChatMessage> messages;        // chat
    std::string prompt;                       // completion, as text
    std::optional<std::vector<int32_t>> prompt_ids;   // completion, given as token ids
    bool stream = false;
    bool include_usage = false;               // stream_options.include_usage
    std::optional<int> max_tokens;            // absent: completions 16, chat until the context ends
    SamplingConfig sampling;                  // OpenAI's defaults: temperature 1, top_p 1
    bool seed_given = false;
    std::vector<std::string> stop;
    bool ignore_eos = false;
};

// Throws ApiException (400) naming the field at fault.
CompletionRequest parse_completion_request(std::string_view body, Endpoint endpoint);

// The parts every response of one request shares.
struct ResponseIds {
    Endpoint endpoint = Endpoint::completion;
    std::string id;          // "chatcmpl-…" or "cmpl-…"
    int64_t created = 0;     // seconds since 1970
    std::string model;
};

struct Usage {
    int64_t prompt_tokens = 0, completion_tokens = 0;
    nlohmann::json to_json() const;
};

// "stop" or "length", from a generation's stop reason.
std::string finish_reason(const std::string& stop_reason);

// The whole answer of a request that does not stream.
nlohmann::json completion_response(const ResponseIds& ids, const std::string& text, const std::string& finish,
                                   const Usage& usage);
// One streamed chunk: `text` (chat: the first chunk carries the role too), or
// the last one with its finish reason and no text.
nlohmann::json stream_chunk(const ResponseIds& ids, const std::string& text, bool first,
                            const std::optional<std::string>& finish);
// The chunk with the usage that stream_options.include_usage asks for.
nlohmann::json usage_chunk(const ResponseIds& ids, const Usage& usage);
// A server-sent event carrying `data`; sse_done() is the stream's end.
std::string sse_event(const nlohmann::json& data);
std::string sse_done();

// GET /v1/models.
nlohmann::json model_list(const std::string& model, int64_t created);
nlohmann::json model_object(const std::string& model, int64_t created);

} // namespace crucible::serve
