// Drives hearth-server with the official `openai` npm package, unmodified: model listing, chat
// (whole and streamed, with usage), embeddings (the package asks for base64 and decodes it),
// float embeddings and FLUX images (b64_json PNGs). Prints one JSON object with what it saw;
// exits 1 on any failure.
//   node openai_client.mjs <node_modules dir> <base url> <api key>
import {createRequire} from 'node:module';
import path from 'node:path';

const [modules, baseURL, apiKey] = process.argv.slice(2);
const require = createRequire(path.join(modules, 'x.js'));
const OpenAI = require('openai').default ?? require('openai');

const client = new OpenAI({baseURL, apiKey, maxRetries: 0, timeout: 120000});
const out = {};
try {
  const models = [];
  for await (const m of client.models.list()) models.push(m.id);
  out.models = models;

  const chat = await client.chat.completions.create({
    model: 'any-name',
    messages: [{role: 'system', content: 'Be brief.'}, {role: 'user', content: 'Hello!'}],
    max_tokens: 6,
    temperature: 0,
    seed: 3,
  });
  out.chat = {
    object: chat.object,
    content: chat.choices[0].message.content,
    role: chat.choices[0].message.role,
    finish: chat.choices[0].finish_reason,
    usage: chat.usage
  };

  const stream = await client.chat.completions.create({
    model: 'any-name',
    messages: [{role: 'user', content: 'Hello!'}],
    max_tokens: 6,
    temperature: 0,
    seed: 3,
    stream: true,
    stream_options: {include_usage: true},
  });
  let text = '';
  let finish = null;
  let usage = null;
  let chunks = 0;
  for await (const chunk of stream) {
    ++chunks;
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      if (c.delta?.content) text += c.delta.content;
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  out.stream = {content: text, finish, usage, chunks};

  const emb = await client.embeddings.create({model: 'x', input: ['owls hunt', 'cats sleep']});
  out.embeddings = {
    count: emb.data.length,
    dim: emb.data[0].embedding.length,
    first: emb.data[0].embedding.slice(0, 4),
    usage: emb.usage
  };
  const floats =
      await client.embeddings.create({model: 'x', input: 'owls hunt', encoding_format: 'float'});
  out.float_first = floats.data[0].embedding.slice(0, 4);

  const images = await client.images.generate({
    model: 'any-name',
    prompt: 'a lighthouse at dawn',
    n: 2,
    size: '64x48',
    response_format: 'b64_json',
    seed: 9,
    steps: 1,
    t5_max_length: 8,
  });
  out.images = {
    created: images.created,
    pngs: images.data.map((d) => {
      const png = Buffer.from(d.b64_json, 'base64');
      return {
        signature: png.subarray(0, 8).toString('hex'),
        width: png.readUInt32BE(16),
        height: png.readUInt32BE(20),
        seed: d.seed,
      };
    }),
  };
  try {
    await client.images.generate({model: 'x', prompt: 'x', response_format: 'url'});
    out.image_url = 'accepted';
  } catch (e) {
    out.image_url = {status: e.status, param: e.param};
  }

  try {
    await client.chat.completions.create({model: 'x', messages: []});
    out.bad_request = 'accepted';
  } catch (e) {
    out.bad_request = {status: e.status, message: e.message};
  }
  console.log(JSON.stringify(out));
} catch (e) {
  console.log(JSON.stringify({failure: String(e && e.stack || e), partial: out}));
  process.exit(1);
}
