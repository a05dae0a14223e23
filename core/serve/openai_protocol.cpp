#include "core/serve/openai_protocol.h"

#include <cmath>
#include <limits>

namespace crucible::serve {

using nlohmann::json;

namespace {

const char* object_name(Endpoint e, bool chunk)
{
    if (e == Endpoint::chat) return chunk ? "chat.completion.chunk" : "chat.completion";
    return "text_completion";
}

// Reads optional fields of the request object, each checked for its type;
// null counts as absent, as it does for the OpenAI API.
class Fields {
public:
    explicit Fields(const json& body) : m_body(body) {}

    const json* find(const char* key) const
    {
        const auto it = m_body.find(key);
        return it == m_body.end() || it->is_null() ? nullptr : &*it;
    }
    std::optional<double> number(const char* key) const
    {
        const json* v = find(key);
        if (!v) return std::nullopt;
        if (!v->is_number()) throw ApiException(bad_request(std::string("'") + key + "' must be a number", key));
        return v->get<double>();
    }
    std::optional<int64_t> integer(const char* key) const
    {
        const json* v = find(key);
        if (!v) return std::nullopt;
        // 3.0 is an integer to JavaScript clients.
        if (v->is_number_integer()) return v->get<int64_t>();
        if (v->is_number_float()) {
            const double d = v->get<double>();
            if (std::isfinite(d) && d == std::floor(d) && std::abs(d) < 9e15) return int64_t(d);
        }
        throw ApiException(bad_request(std::string("'") + key + "' must be an integer", key));
    }
    std::optional<bool> boolean(const char* key) const
    {
        const json* v = find(key);
        if (!v) return std::nullopt;
        if (!v->is_boolean()) throw ApiException(bad_request(std::string("'") + key + "' must be true or false", key));
        return v->get<bool>();
    }

private:
    const json& m_body;
};

void check_range(const char* key, double v, double lo, double hi, bool lo_open = false)
{
    if (!std::isfinite(v) || v > hi || (lo_open ? v <= lo : v < lo)) {
        char buf[160];
        std::snprintf(buf, sizeof buf, "'%s' must be %s %g and %g, got %g", key,
                      lo_open ? "above" : "between", lo, hi, v);
        throw ApiException(bad_request(buf, key));
    }
}

// A message's content: a string, or an array of {"type": "text", "text": ...} parts.
std::string message_content(const json& content, size_t index)
{
    const std::string param = "messages[" + std::to_string(index) + "].content";
    if (content.is_null()) return {};
    if (content.is_string()) return content.get<std::string>();
    if (!content.is_array()) throw ApiException(bad_request("'" + param + "' must be a string or an array of text parts", param));
    std::string text;
    for (const json& part : content) {
        if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") || !part["text"].is_string())
            throw ApiException(bad_request("'" + param + "' may only hold parts of type \"text\" with a string \"text\": "
                                           "this model reads text only", param));
        text += part["text"].get<std::string>();
    }
    return text;
}

std::vector<ChatMessage> parse_messages(const json& body)
{
    const auto it = body.find("messages");
    if (it == body.end() || it->is_null())
        throw ApiException(bad_request("'messages' is required: a list of {\"role\", \"content\"} objects", "messages"));
    if (!it->is_array() || it->empty())
        throw ApiException(bad_request("'messages' must be a non-empty list of {\"role\", \"content\"} objects", "messages"));
    std::vector<ChatMessage> out;
    for (size_t i = 0; i < it->size(); ++i) {
        const json& m = (*it)[i];
        const std::string param = "messages[" + std::to_string(i) + "]";
        if (!m.is_object() || !m.contains("role") || !m["role"].is_string())
            throw ApiException(bad_request("'" + param + "' must be an object with a string \"role\"", param));
        std::string role = m["role"].get<std::string>();
        if (role == "developer") role = "system";   // the newer name of the system role
        if (role != "system" && role != "user" && role != "assistant")
            throw ApiException(bad_request("'" + param + ".role' is \"" + role +
                                               "\"; this server understands \"system\", \"developer\", \"user\" and "
                                               "\"assistant\"",
                                           param + ".role"));
        out.push_back({role, message_content(m.contains("content") ? m["content"] : json(), i)});
    }
    return out;
}

bool is_id_list(const json& v)
{
    if (!v.is_array() || v.empty()) return false;
    for (const json& x : v)
        if (!x.is_number_integer()) return false;
    return true;
}

void parse_prompt(const json& body, CompletionRequest& r)
{
    const auto it = body.find("prompt");
    if (it == body.end() || it->is_null())
        throw ApiException(bad_request("'prompt' is required: a string or a list of token ids", "prompt"));
    const json& p = *it;
    const json* single = &p;
    if (p.is_array() && p.size() == 1 && (p[0].is_string() || p[0].is_array())) single = &p[0];
    else if (p.is_array() && !is_id_list(p))
        throw ApiException(bad_request("'prompt' holds several prompts; this server completes one prompt per request "
                                       "(send them as separate requests, which run in one batch)",
                                       "prompt"));
    if (single->is_string()) {
        r.prompt = single->get<std::string>();
        return;
    }
    if (!is_id_list(*single))
        throw ApiException(bad_request("'prompt' must be a string or a non-empty list of token ids", "prompt"));
    std::vector<int32_t> ids;
    for (const json& x : *single) {
        const int64_t id = x.get<int64_t>();
        if (id < 0 || id > std::numeric_limits<int32_t>::max())
            throw ApiException(bad_request("'prompt' holds the token id " + std::to_string(id) + ", which is not one",
                                           "prompt"));
        ids.push_back(int32_t(id));
    }
    r.prompt_ids = std::move(ids);
}

void parse_stop(const json& body, CompletionRequest& r)
{
    const auto it = body.find("stop");
    if (it == body.end() || it->is_null()) return;
    std::vector<std::string> stops;
    if (it->is_string()) stops.push_back(it->get<std::string>());
    else if (it->is_array()) {
        for (const json& s : *it) {
            if (!s.is_string()) throw ApiException(bad_request("'stop' must be a string or a list of strings", "stop"));
            stops.push_back(s.get<std::string>());
        }
    } else throw ApiException(bad_request("'stop' must be a string or a list of strings", "stop"));
    if (stops.size() > 4) throw ApiException(bad_request("'stop' may hold at most 4 sequences", "stop"));
    for (auto& s : stops)
        if (!s.empty()) r.stop.push_back(std::move(s));
}

} // namespace

json ApiError::to_json() const
{
    return {{"error",
             {{"message", message},
              {"type", type},
              {"param", param.empty() ? json() : json(param)},
              {"code", code.empty() ? json() : json(code)}}}};
}

ApiError bad_request(std::string message, std::string param, std::string code)
{
    ApiError e;
    e.status = 400;
    e.message = std::move(message);
    e.param = std::move(param);
    e.code = std::move(code);
    return e;
}

CompletionRequest parse_completion_request(std::string_view text, Endpoint endpoint)
{
    json body;
    try {
        body = json::parse(text);
    } catch (const json::exception& e) {
        throw ApiException(bad_request(std::string("the request body is not valid JSON (") + e.what() +
                                       "); send a JSON object with Content-Type: application/json"));
    }
    if (!body.is_object()) throw ApiException(bad_request("the request body must be a JSON object"));

    CompletionRequest r;
    r.endpoint = endpoint;
    const auto model = body.find("model");
    if (model == body.end() || model->is_null())
        throw ApiException(bad_request("'model' is required: GET /v1/models lists the one this server runs", "model"));
    if (!model->is_string()) throw ApiException(bad_request("'model' must be a string", "model"));
    r.model = model->get<std::string>();

    if (endpoint == Endpoint::chat) r.messages = parse_messages(body);
    else parse_prompt(body, r);

    Fields f(body);
    r.stream = f.boolean("stream").value_or(false);
    if (const json* so = f.find("stream_options")) {
        if (!so->is_object()) throw ApiException(bad_request("'stream_options' must be an object", "stream_options"));
        const auto inc = so->find("include_usage");
        if (inc != so->end() && !inc->is_null()) {
            if (!inc->is_boolean())
                throw ApiException(bad_request("'stream_options.include_usage' must be true or false",
                                               "stream_options.include_usage"));
            r.include_usage = inc->get<bool>();
        }
    }

    // max_completion_tokens is the chat API's newer name for max_tokens.
    std::optional<int64_t> max_tokens = f.integer("max_tokens");
    const char* max_key = "max_tokens";
    if (endpoint == Endpoint::chat && !max_tokens) {
        max_tokens = f.integer("max_completion_tokens");
        max_key = "max_completion_tokens";
    }
    if (max_tokens) {
        if (*max_tokens < 1 || *max_tokens > std::numeric_limits<int>::max())
            throw ApiException(bad_request(std::string("'") + max_key + "' must be at least 1", max_key));
        r.max_tokens = int(*max_tokens);
    }

    if (const auto n = f.integer("n"); n && *n != 1)
        throw ApiException(bad_request("'n' must be 1: this server generates one choice per request "
                                       "(send several requests, which run in one batch)",
                                       "n"));
    if (const auto b = f.integer("best_of"); b && *b != 1)
        throw ApiException(bad_request("'best_of' must be 1 on this server", "best_of"));
    if (f.boolean("echo").value_or(false)) throw ApiException(bad_request("'echo' is not supported", "echo"));
    if (f.find("suffix")) throw ApiException(bad_request("'suffix' (insertion) is not supported", "suffix"));
    if (const json* lp = f.find("logprobs"); lp && !(lp->is_boolean() && !lp->get<bool>()))
        throw ApiException(bad_request("'logprobs' is not supported by this server", "logprobs"));
    if (const json* tools = f.find("tools"); tools && !(tools->is_array() && tools->empty()))
        throw ApiException(bad_request("'tools' (function calling) is not supported by this server", "tools"));
    if (const json* fmt = f.find("response_format");
        fmt && !(fmt->is_object() && fmt->value("type", "") == "text"))
        throw ApiException(bad_request("'response_format' other than {\"type\": \"text\"} is not supported",
                                       "response_format"));

    SamplingConfig& s = r.sampling;
    s.temperature = 1.0f;   // the OpenAI API's defaults
    s.top_p = 1.0f;
    if (const auto t = f.number("temperature")) {
        check_range("temperature", *t, 0.0, 2.0);
        s.temperature = float(*t);
    }
    if (const auto p = f.number("top_p")) {
        check_range("top_p", *p, 0.0, 1.0, true);
        s.top_p = float(*p);
    }
    if (const auto p = f.number("presence_penalty")) {
        check_range("presence_penalty", *p, -2.0, 2.0);
        s.presence_penalty = float(*p);
    }
    if (const auto p = f.number("frequency_penalty"); p && *p != 0.0)
        throw ApiException(bad_request("'frequency_penalty' is not supported; use presence_penalty or "
                                       "repetition_penalty",
                                       "frequency_penalty"));
    if (const auto k = f.integer("top_k")) {
        if (*k < 0 || *k > std::numeric_limits<int>::max())
            throw ApiException(bad_request("'top_k' must be 0 (off) or positive", "top_k"));
        s.top_k = int(*k);
    }
    if (const auto p = f.number("min_p")) {
        if (!(*p >= 0.0 && *p < 1.0)) throw ApiException(bad_request("'min_p' must be in [0, 1)", "min_p"));
        s.min_p = float(*p);
    }
    if (const auto p = f.number("repetition_penalty")) {
        if (!(*p > 0.0 && std::isfinite(*p)))
            throw ApiException(bad_request("'repetition_penalty' must be positive (1 = off)", "repetition_penalty"));
        s.repetition_penalty = float(*p);
    }
    if (const auto seed = f.integer("seed")) {
        s.seed = uint64_t(*seed);
        r.seed_given = true;
    }
    parse_stop(body, r);
    r.ignore_eos = f.boolean("ignore_eos").value_or(false);
    return r;
}

json Usage::to_json() const
{
    return {{"prompt_tokens", prompt_tokens},
            {"completion_tokens", completion_tokens},
            {"total_tokens", prompt_tokens + completion_tokens}};
}

std::string finish_reason(const std::string& stop_reason)
{
    return stop_reason == "length" || stop_reason == "context full" ? "length" : "stop";
}

json completion_response(const ResponseIds& ids, const std::string& text, const std::string& finish, const Usage& usage)
{
    json choice = {{"index", 0}, {"logprobs", nullptr}, {"finish_reason", finish}};
    if (ids.endpoint == Endpoint::chat) choice["message"] = {{"role", "assistant"}, {"content", text}};
    else choice["text"] = text;
    return {{"id", ids.id},
            {"object", object_name(ids.endpoint, false)},
            {"created", ids.created},
            {"model", ids.model},
            {"choices", json::array({choice})},
            {"usage", usage.to_json()}};
}

json stream_chunk(const ResponseIds& ids, const std::string& text, bool first, const std::optional<std::string>& finish)
{
    json choice = {{"index", 0}, {"logprobs", nullptr}, {"finish_reason", finish ? json(*finish) : json()}};
    if (ids.endpoint == Endpoint::chat) {
        json delta = json::object();
        if (first) delta["role"] = "assistant";
        if (!finish) delta["content"] = text;
        choice["delta"] = delta;
    } else {
        choice["text"] = text;
    }
    return {{"id", ids.id},
            {"object", object_name(ids.endpoint, true)},
            {"created", ids.created},
            {"model", ids.model},
            {"choices", json::array({choice})}};
}

json usage_chunk(const ResponseIds& ids, const Usage& usage)
{
    return {{"id", ids.id},
            {"object", object_name(ids.endpoint, true)},
            {"created", ids.created},
            {"model", ids.model},
            {"choices", json::array()},
            {"usage", usage.to_json()}};
}

std::string sse_event(const json& data)
{
    // dump() escapes control characters, so the event is one line.
    return "data: " + data.dump(-1, ' ', false, json::error_handler_t::replace) + "\n\n";
}

std::string sse_done() { return "data: [DONE]\n\n"; }

json model_object(const std::string& model, int64_t created)
{
    return {{"id", model}, {"object", "model"}, {"created", created}, {"owned_by", "crucible"}};
}

json model_list(const std::string& model, int64_t created)
{
    return {{"object", "list"}, {"data", json::array({model_object(model, created)})}};
}

} // namespace crucible::serve
