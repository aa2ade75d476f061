#pragma once

// The library is built with hidden visibility; only what is marked here is
// part of its ABI.
#if defined(_WIN32)
#if defined(TORCH_EXT_BUILDING_LIBRARY)
#define TORCH_EXT_API __declspec(dllexport)
#else
#define TORCH_EXT_API __declspec(dllimport)
#endif
#else
#define TORCH_EXT_API __attribute__((visibility("default")))
#endif
