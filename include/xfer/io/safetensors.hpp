// The safetensors file format, independent of any model: SafetensorsReader (validate, list, read
// one tensor converted to float / double / int64) and write_safetensors (named raw tensors plus a
// string->string `__metadata__` map). Checkpoints and examples store their extra tensors and JSON
// settings through this layer; io/state_dict.hpp maps files onto a model's parameters.
//
// The one thing to know: files are untrusted. The reader checks the whole header (size caps, JSON
// object, no duplicate keys, known dtypes, shapes, offsets that tile the data section exactly)
// before it reads a single tensor byte, and every problem is an xfer::Error naming the file.
//
// Layout (https://github.com/huggingface/safetensors): u64 little-endian header length N, N bytes
// of JSON {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
// "__metadata__": {"k": "v"}}, then the data section; offsets count from its start.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "xfer/core/error.hpp"
#include "xfer/core/tensor.hpp"
#include "xfer/io/detail/half.hpp"

namespace xfer::io {

static_assert(std::endian::native == std::endian::little, "xfer::io assumes a little-endian host (safetensors is little-endian)");

// Every dtype of the safetensors specification.
enum class Dtype { BOOL, U8, I8, F8_E5M2, F8_E4M3, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64 };

namespace detail {
struct DtypeRow {
  Dtype dtype;
  const char* name;
  size_t size;
  bool floating;
};
inline constexpr DtypeRow kDtypes[] = {
    {Dtype::BOOL, "BOOL", 1, false},   {Dtype::U8, "U8", 1, false},     {Dtype::I8, "I8", 1, false},
    {Dtype::F8_E5M2, "F8_E5M2", 1, true}, {Dtype::F8_E4M3, "F8_E4M3", 1, true}, {Dtype::I16, "I16", 2, false},
    {Dtype::U16, "U16", 2, false},     {Dtype::F16, "F16", 2, true},    {Dtype::BF16, "BF16", 2, true},
    {Dtype::I32, "I32", 4, false},     {Dtype::U32, "U32", 4, false},   {Dtype::F32, "F32", 4, true},
    {Dtype::F64, "F64", 8, true},      {Dtype::I64, "I64", 8, false},   {Dtype::U64, "U64", 8, false},
};
inline const DtypeRow& dtype_row(Dtype d) {
  for (const auto& r : kDtypes)
    if (r.dtype == d) return r;
  throw Error("xfer::io: invalid Dtype value");
}
}  // namespace detail

inline const char* dtype_name(Dtype d) { return detail::dtype_row(d).name; }
inline size_t dtype_size(Dtype d) { return detail::dtype_row(d).size; }
inline bool is_floating(Dtype d) { return detail::dtype_row(d).floating; }
inline std::optional<Dtype> parse_dtype(std::string_view s) {
  for (const auto& r : detail::kDtypes)
    if (s == r.name) return r.dtype;
  return std::nullopt;
}

// The dtype a C++ element type is stored as.
template <class T>
constexpr Dtype dtype_of() {
  if constexpr (std::is_same_v<T, float>) return Dtype::F32;
  else if constexpr (std::is_same_v<T, double>) return Dtype::F64;
  else if constexpr (std::is_same_v<T, int64_t>) return Dtype::I64;
  else if constexpr (std::is_same_v<T, int32_t>) return Dtype::I32;
  else if constexpr (std::is_same_v<T, int16_t>) return Dtype::I16;
  else if constexpr (std::is_same_v<T, int8_t>) return Dtype::I8;
  else if constexpr (std::is_same_v<T, uint64_t>) return Dtype::U64;
  else if constexpr (std::is_same_v<T, uint32_t>) return Dtype::U32;
  else if constexpr (std::is_same_v<T, uint8_t>) return Dtype::U8;
  else if constexpr (std::is_same_v<T, bool>) return Dtype::BOOL;
  else static_assert(!sizeof(T), "no safetensors dtype for this element type");
}

// One tensor as the header describes it; [begin, end) is its byte range in the data section.
struct TensorInfo {
  std::string name;
  Dtype dtype = Dtype::F32;
  Shape shape;
  uint64_t begin = 0, end = 0;

  int64_t numel() const { return shape_numel(shape); }
  uint64_t nbytes() const { return end - begin; }
};

struct ReaderOptions {
  uint64_t max_header_bytes = 100'000'000;  // the reference implementation's cap
  uint64_t max_data_bytes = 0;              // cap on the data section; 0 = only the file size
};

// Keeps the file open; reads seek into it, so one reader must not be used by two threads at once
// (open one reader per thread; validating a model-sized header is cheap).
class SafetensorsReader {
 public:
  // Opens `path` and validates the header and every offset; throws xfer::Error on any problem.
  explicit SafetensorsReader(std::string path, ReaderOptions opt = {}) : path_(std::move(path)), opt_(opt) {
    open_and_validate();
  }

  const std::string& path() const { return path_; }
  uint64_t file_size() const { return file_size_; }
  // Tensors in data order (ascending offsets).
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  std::vector<std::string> keys() const {
    std::vector<std::string> k;
    k.reserve(tensors_.size());
    for (const auto& t : tensors_) k.push_back(t.name);
    return k;
  }
  bool contains(const std::string& name) const { return index_.count(name) != 0; }
  const TensorInfo& info(const std::string& name) const {
    auto it = index_.find(name);
    XFER_CHECK(it != index_.end(), where(), "no tensor named '", name, "' (the file holds ", tensors_.size(),
               " tensors", tensors_.empty() ? "" : ", e.g. '" + tensors_.front().name + "'", ")");
    return tensors_[it->second];
  }
  // The `__metadata__` map (empty when the file has none).
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  // Reads tensor `name` converted to U (float, double or int64_t) into dst[0, count); count must
  // equal the tensor's element count. Float -> int64 accepts only integral values in range.
  template <class U>
  void read_into(const std::string& name, U* dst, int64_t count) const {
    static_assert(std::is_same_v<U, float> || std::is_same_v<U, double> || std::is_same_v<U, int64_t>,
                  "SafetensorsReader reads into float, double or int64_t");
    const TensorInfo& t = info(name);
    XFER_CHECK(count == t.numel(), where(), "tensor '", name, "' has ", t.numel(), " elements (shape ",
               shape_str(t.shape), "), the destination holds ", count);
    const size_t isz = dtype_size(t.dtype);
    constexpr int64_t kChunk = 1 << 18;  // elements per read: bounded extra memory for huge tensors
    std::vector<unsigned char> raw;
    for (int64_t done = 0; done < count;) {
      const int64_t n = std::min(kChunk, count - done);
      raw.resize(static_cast<size_t>(n) * isz);
      read_range(t.begin + static_cast<uint64_t>(done) * isz, raw.data(), raw.size(), name);
      convert(t, raw.data(), n, dst + done, done);
      done += n;
    }
  }
  template <class U>
  std::vector<U> read(const std::string& name) const {
    std::vector<U> out(static_cast<size_t>(info(name).numel()));
    read_into(name, out.data(), static_cast<int64_t>(out.size()));
    return out;
  }
  template <class U>
  Tensor<U> read_tensor(const std::string& name) const {
    Tensor<U> out(info(name).shape);
    read_into(name, out.data(), out.numel());
    return out;
  }
  // The raw little-endian bytes of one tensor.
  std::vector<unsigned char> read_bytes(const std::string& name) const {
    const TensorInfo& t = info(name);
    std::vector<unsigned char> out(static_cast<size_t>(t.nbytes()));
    read_range(t.begin, out.data(), out.size(), name);
    return out;
  }

 private:
  std::string where() const { return "safetensors '" + path_ + "': "; }

  void open_and_validate() {
    namespace fs = std::filesystem;
    std::error_code ec;
    XFER_CHECK(fs::is_regular_file(path_, ec), where(), "not a readable regular file");
    file_size_ = fs::file_size(path_, ec);
    XFER_CHECK(!ec, where(), "cannot get the file size (", ec.message(), ")");
    in_.open(path_, std::ios::binary);
    XFER_CHECK(in_.good(), where(), "cannot open for reading");
    XFER_CHECK(file_size_ >= 8, where(), "file is ", file_size_,
               " bytes, too short for the 8-byte header length (empty or truncated file)");
    unsigned char len_bytes[8];
    in_.read(reinterpret_cast<char*>(len_bytes), 8);
    XFER_CHECK(in_.good(), where(), "cannot read the 8-byte header length");
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | len_bytes[i];
    XFER_CHECK(n <= opt_.max_header_bytes, where(), "header length ", n, " bytes exceeds the limit of ",
               opt_.max_header_bytes, " bytes (ReaderOptions::max_header_bytes)");
    XFER_CHECK(n <= file_size_ - 8, where(), "header length ", n, " bytes is larger than the rest of the file (",
               file_size_ - 8, " bytes): truncated file or not a safetensors file");
    XFER_CHECK(n >= 2, where(), "header length ", n, " bytes is too short for a JSON object");
    header_len_ = n;
    data_size_ = file_size_ - 8 - n;
    if (opt_.max_data_bytes)
      XFER_CHECK(data_size_ <= opt_.max_data_bytes, where(), "data section of ", data_size_,
                 " bytes exceeds the limit of ", opt_.max_data_bytes, " bytes (ReaderOptions::max_data_bytes)");
    std::string header(static_cast<size_t>(n), '\0');
    in_.read(header.data(), static_cast<std::streamsize>(n));
    XFER_CHECK(in_.good(), where(), "cannot read the ", n, "-byte header");
    parse_header(header);
  }

  // Rejects nesting deeper than the format needs before the JSON library builds anything.
  void check_nesting(const std::string& h) const {
    int depth = 0;
    bool in_str = false, esc = false;
    for (char c : h) {
      if (in_str) {
        if (esc) esc = false;
        else if (c == '\\') esc = true;
        else if (c == '"') in_str = false;
      } else if (c == '"') {
        in_str = true;
      } else if (c == '{' || c == '[') {
        XFER_CHECK(++depth <= 4, where(), "header JSON is nested deeper than the format allows");
      } else if (c == '}' || c == ']') {
        --depth;
      }
    }
  }

  void parse_header(const std::string& header) {
    using json = nlohmann::json;
    XFER_CHECK(header.front() == '{', where(), "header is not a JSON object (it starts with byte ",
               static_cast<int>(static_cast<unsigned char>(header.front())), ", expected '{')");
    check_nesting(header);
    // nlohmann keeps the last of duplicate keys silently; the callback sees every key first.
    std::vector<std::set<std::string>> seen;
    std::string duplicate;
    auto cb = [&](int, json::parse_event_t ev, json& parsed) {
      if (ev == json::parse_event_t::object_start) {
        seen.emplace_back();
      } else if (ev == json::parse_event_t::object_end) {
        if (!seen.empty()) seen.pop_back();
      } else if (ev == json::parse_event_t::key && !seen.empty()) {
        const auto& k = parsed.get_ref<const std::string&>();
        if (!seen.back().insert(k).second && duplicate.empty()) duplicate = k;
      }
      return true;
    };
    json j;
    try {
      j = json::parse(header, cb);
    } catch (const json::exception& e) {
      throw Error(where() + "header is not valid JSON (" + e.what() + ")");
    }
    XFER_CHECK(duplicate.empty(), where(), "duplicate key '", duplicate, "' in the header");
    XFER_CHECK(j.is_object(), where(), "header is not a JSON object (got a JSON ", j.type_name(), ")");

    for (auto it = j.begin(); it != j.end(); ++it) {
      const std::string& name = it.key();
      const json& v = it.value();
      if (name == "__metadata__") {
        XFER_CHECK(v.is_object(), where(), "__metadata__ must be an object of strings, got a JSON ", v.type_name());
        for (auto m = v.begin(); m != v.end(); ++m) {
          XFER_CHECK(m.value().is_string(), where(), "__metadata__ value of '", m.key(), "' must be a string, got a JSON ",
                     m.value().type_name());
          metadata_[m.key()] = m.value().get<std::string>();
        }
        continue;
      }
      tensors_.push_back(parse_entry(name, v));
    }
    std::stable_sort(tensors_.begin(), tensors_.end(), [](const TensorInfo& a, const TensorInfo& b) {
      return a.begin < b.begin || (a.begin == b.begin && a.end < b.end);
    });
    // The data section must be tiled exactly: no overlap, no gap, nothing past the end.
    uint64_t pos = 0;
    const TensorInfo* prev = nullptr;
    for (const auto& t : tensors_) {
      XFER_CHECK(t.end <= data_size_, where(), "tensor '", t.name, "' data_offsets [", t.begin, ", ", t.end,
                 ") run past the end of the data section (", data_size_, " bytes; truncated file?)");
      XFER_CHECK(t.begin >= pos, where(), "tensor '", t.name, "' data_offsets [", t.begin, ", ", t.end,
                 ") overlap tensor '", prev ? prev->name : "", "' [", prev ? prev->begin : 0, ", ", pos, ")");
      XFER_CHECK(t.begin == pos, where(), "gap in the data section: bytes [", pos, ", ", t.begin,
                 ") belong to no tensor (before '", t.name, "')");
      pos = t.end;
      prev = &t;
    }
    XFER_CHECK(pos == data_size_, where(), "data section is ", data_size_, " bytes but the tensors cover only ", pos,
               " (trailing bytes after the last tensor)");
    for (size_t i = 0; i < tensors_.size(); ++i) index_.emplace(tensors_[i].name, i);
  }

  TensorInfo parse_entry(const std::string& name, const nlohmann::json& v) const {
    XFER_CHECK(v.is_object(), where(), "entry '", name, "' must be an object with dtype, shape and data_offsets, got a JSON ",
               v.type_name());
    TensorInfo t;
    t.name = name;
    auto dt = v.find("dtype");
    XFER_CHECK(dt != v.end() && dt->is_string(), where(), "tensor '", name, "': missing or non-string 'dtype'");
    auto parsed = parse_dtype(dt->get_ref<const std::string&>());
    XFER_CHECK(parsed.has_value(), where(), "tensor '", name, "': unknown dtype '", dt->get<std::string>(),
               "' (known: BOOL, U8, I8, F8_E5M2, F8_E4M3, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64)");
    t.dtype = *parsed;
    auto sh = v.find("shape");
    XFER_CHECK(sh != v.end() && sh->is_array(), where(), "tensor '", name, "': missing or non-array 'shape'");
    uint64_t numel = 1;
    for (const auto& d : *sh) {
      XFER_CHECK(d.is_number_unsigned() || (d.is_number_integer() && d.get<int64_t>() >= 0), where(), "tensor '", name,
                 "': shape entries must be non-negative integers, got ", d.dump());
      const uint64_t u = d.get<uint64_t>();
      XFER_CHECK(u <= static_cast<uint64_t>(INT64_MAX) && !__builtin_mul_overflow(numel, u, &numel) &&
                     numel <= static_cast<uint64_t>(INT64_MAX),
                 where(), "tensor '", name, "': shape ", sh->dump(), " has too many elements");
      t.shape.push_back(static_cast<int64_t>(u));
    }
    uint64_t nbytes = 0;
    XFER_CHECK(!__builtin_mul_overflow(numel, static_cast<uint64_t>(dtype_size(t.dtype)), &nbytes), where(), "tensor '",
               name, "': shape ", sh->dump(), " is too large in bytes");
    auto off = v.find("data_offsets");
    XFER_CHECK(off != v.end() && off->is_array() && off->size() == 2 && (*off)[0].is_number_unsigned() &&
                   (*off)[1].is_number_unsigned(),
               where(), "tensor '", name, "': 'data_offsets' must be two non-negative integers [begin, end]",
               off != v.end() ? ", got " + off->dump() : std::string(", missing"));
    t.begin = (*off)[0].get<uint64_t>();
    t.end = (*off)[1].get<uint64_t>();
    XFER_CHECK(t.begin <= t.end, where(), "tensor '", name, "': data_offsets [", t.begin, ", ", t.end, ") end before they begin");
    XFER_CHECK(t.end - t.begin == nbytes, where(), "tensor '", name, "': shape ", shape_str(t.shape), " of ",
               dtype_name(t.dtype), " needs ", nbytes, " bytes but data_offsets [", t.begin, ", ", t.end, ") span ",
               t.end - t.begin);
    return t;
  }

  void read_range(uint64_t begin, unsigned char* dst, size_t n, const std::string& name) const {
    if (n == 0) return;
    in_.clear();
    in_.seekg(static_cast<std::streamoff>(8 + header_len_ + begin));
    in_.read(reinterpret_cast<char*>(dst), static_cast<std::streamsize>(n));
    XFER_CHECK(in_.good() && static_cast<size_t>(in_.gcount()) == n, where(), "could not read the data of tensor '",
               name, "' (file changed or truncated since it was opened?)");
  }

  template <class S>
  static S load(const unsigned char* p) {
    S s;
    std::memcpy(&s, p, sizeof(S));
    return s;
  }

  // Element i of a raw chunk as double (exact for every dtype but 64-bit integers beyond 2^53).
  static double as_double(Dtype d, const unsigned char* p) {
    switch (d) {
      case Dtype::BOOL: return *p ? 1.0 : 0.0;
      case Dtype::U8: return *p;
      case Dtype::I8: return load<int8_t>(p);
      case Dtype::F8_E5M2: return detail::f8e5m2_to_float(*p);
      case Dtype::F8_E4M3: return detail::f8e4m3fn_to_float(*p);
      case Dtype::I16: return load<int16_t>(p);
      case Dtype::U16: return load<uint16_t>(p);
      case Dtype::F16: return detail::half_to_float(load<uint16_t>(p));
      case Dtype::BF16: return detail::bf16_to_float(load<uint16_t>(p));
      case Dtype::I32: return load<int32_t>(p);
      case Dtype::U32: return load<uint32_t>(p);
      case Dtype::F32: return load<float>(p);
      case Dtype::F64: return load<double>(p);
      case Dtype::I64: return static_cast<double>(load<int64_t>(p));
      case Dtype::U64: return static_cast<double>(load<uint64_t>(p));
    }
    return 0;
  }

  template <class U>
  void convert(const TensorInfo& t, const unsigned char* raw, int64_t n, U* dst, int64_t first) const {
    const size_t isz = dtype_size(t.dtype);
    if constexpr (std::is_same_v<U, int64_t>) {
      for (int64_t i = 0; i < n; ++i) {
        const unsigned char* p = raw + static_cast<size_t>(i) * isz;
        if (t.dtype == Dtype::I64) {
          dst[i] = load<int64_t>(p);
        } else if (t.dtype == Dtype::U64) {
          const uint64_t u = load<uint64_t>(p);
          XFER_CHECK(u <= static_cast<uint64_t>(INT64_MAX), where(), "tensor '", t.name, "' element ", first + i,
                     " (", u, ") does not fit in int64");
          dst[i] = static_cast<int64_t>(u);
        } else {
          const double v = as_double(t.dtype, p);
          XFER_CHECK(std::isfinite(v) && v == std::floor(v) && std::fabs(v) < 9.2e18, where(), "tensor '", t.name,
                     "' element ", first + i, " is ", v, ", not an integer (reading ", dtype_name(t.dtype), " as int64)");
          dst[i] = static_cast<int64_t>(v);
        }
      }
    } else {
      if (t.dtype == dtype_of<U>()) {
        std::memcpy(dst, raw, static_cast<size_t>(n) * sizeof(U));
        return;
      }
      for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<U>(as_double(t.dtype, raw + static_cast<size_t>(i) * isz));
    }
  }

  std::string path_;
  ReaderOptions opt_;
  mutable std::ifstream in_;
  uint64_t file_size_ = 0, header_len_ = 0, data_size_ = 0;
  std::vector<TensorInfo> tensors_;
  std::unordered_map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// One tensor to write: `data` points at numel(shape) * dtype_size(dtype) little-endian bytes that
// must stay alive until write_safetensors returns.
struct TensorView {
  std::string name;
  Dtype dtype = Dtype::F32;
  Shape shape;
  const void* data = nullptr;
};

template <class S>
TensorView view(std::string name, const S* data, Shape shape) {
  return {std::move(name), dtype_of<S>(), std::move(shape), data};
}
template <class S>
TensorView view(std::string name, const Tensor<S>& t) {
  return {std::move(name), dtype_of<S>(), t.shape(), t.data()};
}

// Writes the tensors (data in the given order) and metadata to `path`: first to
// `path.tmp.<pid>`, then renamed, so readers never see a half-written file.
inline void write_safetensors(const std::string& path, const std::vector<TensorView>& tensors,
                              const std::map<std::string, std::string>& metadata = {}) {
  using json = nlohmann::json;
  const std::string where = "write_safetensors '" + path + "': ";
  json header = json::object();
  std::vector<uint64_t> sizes;
  uint64_t offset = 0;
  for (const auto& t : tensors) {
    XFER_CHECK(!t.name.empty() && t.name != "__metadata__", where, "invalid tensor name '", t.name, "'");
    XFER_CHECK(!header.contains(t.name), where, "tensor name '", t.name, "' given twice");
    for (int64_t d : t.shape) XFER_CHECK(d >= 0, where, "tensor '", t.name, "' has a negative dimension in ", shape_str(t.shape));
    const uint64_t nbytes = static_cast<uint64_t>(shape_numel(t.shape)) * dtype_size(t.dtype);
    XFER_CHECK(nbytes == 0 || t.data != nullptr, where, "tensor '", t.name, "' has no data pointer");
    header[t.name] = {{"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {offset, offset + nbytes}}};
    sizes.push_back(nbytes);
    offset += nbytes;
  }
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::string text;
  try {
    text = header.dump();
  } catch (const json::exception& e) {
    throw Error(where + "cannot encode the header (" + e.what() + "); names and metadata must be valid UTF-8");
  }
  text.append((8 - text.size() % 8) % 8, ' ');  // 8-byte aligned data, as the reference writer does
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  try {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    XFER_CHECK(out.good(), where, "cannot open '", tmp, "' for writing");
    unsigned char len[8];
    uint64_t n = text.size();
    for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>((n >> (8 * i)) & 0xFF);
    out.write(reinterpret_cast<const char*>(len), 8);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    for (size_t i = 0; i < tensors.size(); ++i)
      out.write(static_cast<const char*>(tensors[i].data), static_cast<std::streamsize>(sizes[i]));
    out.flush();
    XFER_CHECK(out.good(), where, "write to '", tmp, "' failed (disk full?)");
    out.close();
    XFER_CHECK(!out.fail(), where, "closing '", tmp, "' failed");
    std::error_code ec;
    std::filesystem::rename(tmp, path, ec);
    XFER_CHECK(!ec, where, "cannot rename '", tmp, "' to the destination (", ec.message(), ")");
  } catch (...) {
    std::error_code ec;
    std::filesystem::remove(tmp, ec);
    throw;
  }
}

}  // namespace xfer::io
