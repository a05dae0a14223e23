// Drives `crucible-cli serve` with the official OpenAI client for Node and
// prints what it got as one JSON object on the last line. The caller checks
// the values; any exception the client throws is reported as { "failed": ... }.
// Usage: node openai_check.mjs BASE_URL MODEL
import OpenAI from "openai";

const [baseURL, model] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey: "unused", maxRetries: 0, timeout: 60000 });
const messages = [
  { role: "system", content: "You are a poet." },
  { role: "user", content: "Write about the sea." },
];
const out = {};
try {
  out.models = (await client.models.list()).data.map((m) => m.id);

  const chat = await client.chat.completions.create({ model, messages, max_tokens: 24, temperature: 0 });
  out.chat = {
    text: chat.choices[0].message.content,
    role: chat.choices[0].message.role,
    finish: chat.choices[0].finish_reason,
    usage: chat.usage,
    object: chat.object,
  };

  const stream = await client.chat.completions.create({
    model, messages, max_tokens: 24, temperature: 0, stream: true, stream_options: { include_usage: true },
  });
  let text = "", finish = null, usage = null, chunks = 0, role = null;
  for await (const chunk of stream) {
    chunks++;
    if (chunk.usage) usage = chunk.usage;
    const choice = chunk.choices[0];
    if (!choice) continue;
    if (choice.delta.role) role = choice.delta.role;
    text += choice.delta.content ?? "";
    if (choice.finish_reason) finish = choice.finish_reason;
  }
  out.chat_stream = { text, finish, usage, chunks, role };

  const completion = await client.completions.create({ model, prompt: "The sea", max_tokens: 12, temperature: 0.7, seed: 5 });
  out.completion = { text: completion.choices[0].text, finish: completion.choices[0].finish_reason, usage: completion.usage };
  const completionStream = await client.completions.create({
    model, prompt: "The sea", max_tokens: 12, temperature: 0.7, seed: 5, stream: true,
  });
  let streamed = "";
  for await (const chunk of completionStream) streamed += chunk.choices[0]?.text ?? "";
  out.completion_stream = { text: streamed };

  try {
    await client.chat.completions.create({ model: "no-such-model", messages });
    out.unknown_model = { status: null };
  } catch (e) {
    out.unknown_model = { status: e.status ?? null, code: e.code ?? null, message: e.message };
  }
  try {
    await client.chat.completions.create({ model, messages, temperature: 7 });
    out.bad_temperature = { status: null };
  } catch (e) {
    out.bad_temperature = { status: e.status ?? null, param: e.param ?? null };
  }
} catch (e) {
  out.failed = String(e?.stack ?? e);
}
console.log(JSON.stringify(out));
