"""An independent sentence-embedding forward pass for BERT-family models, in numpy only.

It shares nothing with the Rust implementation under test: its own WordPiece tokenizer (from
vocab.txt, not tokenizer.json), its own safetensors reader, its own encoder. Reads JSON
`{"model_dir": ..., "texts": [...]}` on stdin and prints `{"embeddings": [[...], ...],
"seconds": ...}`: mean-pooled, unit-length vectors, one text at a time (no padding).
"""

import json
import math
import struct
import sys
import time
import unicodedata

import numpy as np


def load_weights(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, meta in header.items():
        if name == "__metadata__" or meta["dtype"] != "F32":
            continue
        start, end = meta["data_offsets"]
        out[name] = np.frombuffer(data[start:end], dtype="<f4").reshape(meta["shape"])
    return out


class WordPiece:
    def __init__(self, vocab_path, max_len):
        with open(vocab_path, encoding="utf-8") as f:
            self.vocab = {line.rstrip("\n"): i for i, line in enumerate(f)}
        self.max_len = max_len

    @staticmethod
    def basic(text):
        text = unicodedata.normalize("NFD", text.lower())
        text = "".join(c for c in text if unicodedata.category(c) != "Mn")
        words, word = [], ""
        for c in text:
            if c.isspace():
                if word:
                    words.append(word)
                word = ""
            elif unicodedata.category(c).startswith("P") or (33 <= ord(c) <= 47) or (58 <= ord(c) <= 64) \
                    or (91 <= ord(c) <= 96) or (123 <= ord(c) <= 126):
                if word:
                    words.append(word)
                words.append(c)
                word = ""
            else:
                word += c
        if word:
            words.append(word)
        return words

    def encode(self, text):
        ids = [self.vocab["[CLS]"]]
        for word in self.basic(text):
            if len(word) > 100:
                ids.append(self.vocab["[UNK]"])
                continue
            pieces, start = [], 0
            while start < len(word):
                end, found = len(word), None
                while start < end:
                    piece = word[start:end] if start == 0 else "##" + word[start:end]
                    if piece in self.vocab:
                        found = self.vocab[piece]
                        break
                    end -= 1
                if found is None:
                    pieces = [self.vocab["[UNK]"]]
                    break
                pieces.append(found)
                start = end
            ids.extend(pieces)
        ids = ids[: self.max_len - 1]
        ids.append(self.vocab["[SEP]"])
        return np.array(ids)


def erf(x):
    # Abramowitz & Stegun 7.1.26, |error| < 1.5e-7.
    sign = np.sign(x)
    x = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * x)
    y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * np.exp(-x * x)
    return sign * y


def layer_norm(x, w, b, eps):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w + b


def embed(w, config, ids):
    eps = config["layer_norm_eps"]
    heads = config["num_attention_heads"]
    hidden = config["hidden_size"]
    size = hidden // heads
    n = len(ids)
    x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:n] \
        + w["embeddings.token_type_embeddings.weight"][0]
    x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
    for i in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        lin = lambda h, name: h @ w[p + name + ".weight"].T + w[p + name + ".bias"]
        q = lin(x, "attention.self.query").reshape(n, heads, size).transpose(1, 0, 2)
        k = lin(x, "attention.self.key").reshape(n, heads, size).transpose(1, 0, 2)
        v = lin(x, "attention.self.value").reshape(n, heads, size).transpose(1, 0, 2)
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(size)
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        scores /= scores.sum(-1, keepdims=True)
        context = (scores @ v).transpose(1, 0, 2).reshape(n, hidden)
        x = layer_norm(lin(context, "attention.output.dense") + x,
                       w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"], eps)
        h = lin(x, "intermediate.dense")
        h = 0.5 * h * (1.0 + erf(h / math.sqrt(2.0)))
        x = layer_norm(lin(h, "output.dense") + x, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], eps)
    pooled = x.mean(0)
    return pooled / np.linalg.norm(pooled)


def main():
    request = json.load(sys.stdin)
    model_dir = request["model_dir"]
    with open(f"{model_dir}/config.json") as f:
        config = json.load(f)
    try:
        with open(f"{model_dir}/sentence_bert_config.json") as f:
            max_len = json.load(f)["max_seq_length"]
    except OSError:
        max_len = 512
    weights = load_weights(f"{model_dir}/model.safetensors")
    tokenizer = WordPiece(f"{model_dir}/vocab.txt", max_len)
    started = time.perf_counter()
    vectors = [embed(weights, config, tokenizer.encode(t)).tolist() for t in request["texts"]]
    seconds = time.perf_counter() - started
    json.dump({"embeddings": vectors, "seconds": seconds}, sys.stdout)


if __name__ == "__main__":
    main()
