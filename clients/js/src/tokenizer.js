// Text -> fixed-length token ids as the Python runtime makes them (clipping_edge/tokenizer.py): the bundle's
// tokenizer.json read by tokenizers.js, then the template's special tokens (ours: <sot> text <eot>; SigLIP's:
// text </s>), truncation and padding to the context length done here, where they are easy to see and to port
// (tokenizers.js does not apply the file's padding and truncation sections).
import { Tokenizer } from "@huggingface/tokenizers";

export const PAD = "<pad>", SOT = "<sot>", EOT = "<eot>";

export class TextTokenizer {
  /**
   * @param {object} tokenizerJson the parsed tokenizer.json
   * @param {number} contextLength the bundle manifest's context_length
   */
  constructor(tokenizerJson, contextLength) {
    this.tokenizer = new Tokenizer(tokenizerJson, {});
    this.contextLength = contextLength;
    const id = (token) => {
      const value = this.tokenizer.token_to_id(token);
      if (value === undefined) throw new Error(`tokenizer.json has no ${token} token: it was not written by clipping-edge`);
      return value;
    };
    // The file's own padding where it sets one (CLIP pads with id 0, a real token; SigLIP with </s>), else our <pad>.
    const padding = tokenizerJson.padding;
    this.padId = padding ? padding.pad_id : id(PAD);
    [this.prefix, this.suffix] = templateSpecials(tokenizerJson.post_processor) ?? [[id(SOT)], [id(EOT)]];
  }

  /** One text -> Int32Array(contextLength): the template's start tokens, as many text tokens as fit, its end
   *  tokens, padding. */
  encodeOne(text) {
    // As in Python: a literal special token in user text would add a second end token and corrupt pooling,
    // and a megabyte label is cut before tokenizing.
    const clean = text.slice(0, 64 * this.contextLength).replaceAll(EOT, " ").replaceAll(SOT, " ").replaceAll(PAD, " ");
    const room = this.contextLength - this.prefix.length - this.suffix.length;
    const content = this.tokenizer.encode(clean, { add_special_tokens: false }).ids.slice(0, room);
    const ids = new Int32Array(this.contextLength).fill(this.padId);
    ids.set([...this.prefix, ...content, ...this.suffix]);
    return ids;
  }

  /** Texts -> Int32Array(texts.length * contextLength), row-major. */
  encode(texts) {
    const out = new Int32Array(texts.length * this.contextLength);
    texts.forEach((text, i) => out.set(this.encodeOne(text), i * this.contextLength));
    return out;
  }
}

/** A TemplateProcessing post-processor's single-text template -> [ids before the text, ids after it]; null
 *  for any other post-processor. */
function templateSpecials(processor) {
  if (!processor || processor.type !== "TemplateProcessing") return null;
  const at = processor.single.findIndex((part) => "Sequence" in part);
  const ids = (parts) => parts.flatMap((part) => processor.special_tokens[part.SpecialToken.id].ids);
  return [ids(processor.single.slice(0, at)), ids(processor.single.slice(at + 1))];
}
