// Resolving what a user passes as a model (`--model-id`): a folder or file on disk, or a Hugging
// Face repo id ("mlx-community/Phi-3-mini-4k-instruct-4bit") looked up, without any network, in
// the local Hugging Face cache that huggingface_hub and mlx-lm fill:
//   $HF_HUB_CACHE, else $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else
//   ~/.cache/huggingface/hub; inside it models--ORG--NAME/snapshots/<commit>/, the commit read
//   from refs/<revision> (default main). "ORG/NAME@REV" picks a ref or a commit; a trailing
//   "/FILE.gguf" picks one file of a snapshot.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace hearth::formats {

// The Hugging Face hub cache folder the environment points at (it may not exist).
std::filesystem::path hf_hub_cache();

// An existing path is returned as it is. Otherwise a repo id is resolved in the cache to its
// snapshot folder (or the one GGUF file of a snapshot that holds no config.json). Throws
// Error(kNotFound) saying where it looked, and that hearth never downloads.
std::filesystem::path resolve_model(const std::string& spec);

}  // namespace hearth::formats
