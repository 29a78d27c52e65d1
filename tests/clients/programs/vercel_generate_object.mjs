// The Vercel AI SDK as its users use it: generateObject with a zod schema holding .int()
// (zod emits minimum/maximum of +-9007199254740991 for it).
// Usage: node vercel_generate_object.mjs WIRE MODEL   (WIRE: chat | responses; OPENAI_BASE_URL, OPENAI_API_KEY set)
import { createOpenAI } from "@ai-sdk/openai";
import { generateObject } from "ai";
import { z } from "zod";

const [wire, modelId] = process.argv.slice(2);
const openai = createOpenAI({ baseURL: process.env.OPENAI_BASE_URL, apiKey: process.env.OPENAI_API_KEY });
const model = wire === "chat" ? openai.chat(modelId) : openai(modelId);
const { object } = await generateObject({
  model,
  schema: z.object({ name: z.string(), age: z.number().int().min(0).max(150) }),
  prompt: "Extract the person: Alice is 31 years old.",
  temperature: 0,
  maxRetries: 0,
});
console.log(JSON.stringify({ object }));
