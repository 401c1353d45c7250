// strata_reference_dump — writes one reference case directory for the jax oracle
// (tests/oracle/CONTRACT.md): config.json plus NAME.npy for every input, output, aux tensor,
// cotangent dout.l and reference gradient grad.X.
//
//   strata_reference_dump --method M --seed S --out DIR [options]   (--help lists the options)
#include <bit>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "case_util.hpp"

namespace fs = std::filesystem;
using namespace strata::reference;
using strata::reference::testing::make_case;

namespace {

const char* kUsage = R"(usage: strata_reference_dump --method M --seed S --out DIR [options]
  --method      vanilla | depth | resformer | svformer | exoformer | mea | gated
  --layers L    (default 4)          --heads H (4)        --kv-heads H_kv (2)   --head-dim d (8)
  --seqlens a,b,...   query (and key) lengths per sequence, 0 allowed (default 5,0,7); alias --seqlens-q
  --seqlens-k a,b,... vanilla only: key lengths (default = --seqlens)
  --causal 0|1 (1)    --window-left W (-1)   --scale S (0 = 1/sqrt(d))
  --qk-norm 0|1 (1)   --rope 0|1 (1)         --rope-theta T (10000)   --norm-eps E (1e-6)
  depth:     --stride S (2) --recent-window R (1) | --sources "0;0,1;..." (one list per layer,
             ';'- or '|'-separated, empty allowed; L-1 lists mean layers 1..L-1)
  resformer: --granularity scalar|head (scalar); alias --lambda-granularity
  exoformer: --dynamic 0|1 (1) --granularity elementwise|head|scalar (elementwise) --anchor-eps E
  mea:       --component-heads H_c (= kv-heads; alias --num-component-heads) --site kv|output (kv)
             --gn-eps E (1e-5)
  gated:     --gate elementwise|headwise (elementwise)
)";

// ---- .npy v1.0 writer --------------------------------------------------------------------------
void write_npy(const fs::path& path, const Tensor& t) {
  std::string shape = "(";
  for (size_t i = 0; i < t.shape.size(); ++i) shape += std::to_string(t.shape[i]) + ", ";
  if (t.shape.size() > 1) shape.resize(shape.size() - 2);  // "(a, b)"; keep "(n,)" and "()"
  if (t.shape.size() == 1) shape.resize(shape.size() - 1);
  shape += ")";
  std::string header = "{'descr': '<f8', 'fortran_order': False, 'shape': " + shape + ", }";
  // magic (6) + version (2) + header length (2) + header + '\n' is a multiple of 64.
  const size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header += '\n';
  std::ofstream f(path, std::ios::binary);
  f.write("\x93NUMPY\x01\x00", 8);
  const uint16_t len = static_cast<uint16_t>(header.size());
  const unsigned char len_le[2] = {static_cast<unsigned char>(len & 0xff),
                                   static_cast<unsigned char>(len >> 8)};
  f.write(reinterpret_cast<const char*>(len_le), 2);
  f.write(header.data(), static_cast<std::streamsize>(header.size()));
  static_assert(std::endian::native == std::endian::little,
                "the writer assumes a little-endian host");
  f.write(reinterpret_cast<const char*>(t.data.data()),
          static_cast<std::streamsize>(t.data.size() * sizeof(double)));
  if (!f) throw std::runtime_error("cannot write " + path.string());
}

// ---- minimal JSON
// ---------------------------------------------------------------------------------
std::string json_num(double x) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", x);
  return buf;
}
std::string json_str(const std::string& s) {
  return "\"" + s + "\"";
}
std::string json_bool(bool b) {
  return b ? "true" : "false";
}
template <class T>
std::string json_int_list(const std::vector<T>& v) {
  std::string r = "[";
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) r += ", ";
    r += std::to_string(v[i]);
  }
  return r + "]";
}
std::string json_str_list(const std::vector<std::string>& v) {
  std::string r = "[";
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) r += ", ";
    r += json_str(v[i]);
  }
  return r + "]";
}

using Keys = std::vector<std::pair<std::string, std::string>>;  // key → JSON text, in order

void local_keys(Keys& k, const TokenLocalConfig& c) {
  k.push_back({"qk_norm", json_bool(c.qk_norm)});
  k.push_back({"rope", json_bool(c.rope)});
  k.push_back({"rope_theta", json_num(c.rope_theta)});
  k.push_back({"norm_eps", json_num(c.norm_eps)});
}

Keys method_keys(const VanillaConfig&) {
  return {};
}
Keys method_keys(const DepthConfig& c) {
  std::string s = "[";
  for (size_t l = 0; l < c.sources.size(); ++l) {
    if (l) s += ", ";
    s += json_int_list(c.sources[l]);
  }
  Keys k{{"sources", s + "]"},
         {"stride", std::to_string(c.stride)},
         {"recent_window", std::to_string(c.recent_window)}};
  local_keys(k, c.local);
  return k;
}
Keys method_keys(const ResFormerConfig& c) {
  return {{"lambda_granularity", json_str(to_string(c.granularity))}};
}
Keys method_keys(const SVFormerConfig&) {
  return {};
}
Keys method_keys(const ExoFormerConfig& c) {
  return {{"dynamic", json_bool(c.dynamic)},
          {"lambda_granularity", json_str(to_string(c.granularity))},
          {"anchor_eps", json_num(c.anchor_eps)},
          {"norm_eps", json_num(c.norm_eps)},
          {"rope", json_bool(c.rope)},
          {"rope_theta", json_num(c.rope_theta)}};
}
Keys method_keys(const MeaConfig& c) {
  return {{"num_component_heads", std::to_string(c.num_component_heads)},
          {"site", json_str(to_string(c.site))},
          {"gn_eps", json_num(c.gn_eps)},
          {"rope", json_bool(c.rope)},
          {"rope_theta", json_num(c.rope_theta)}};
}
Keys method_keys(const GatedConfig& c) {
  Keys k{{"gate", json_str(to_string(c.gate))}};
  local_keys(k, c.local);
  return k;
}

// ---- options
// -------------------------------------------------------------------------------------
struct Options {
  std::map<std::string, std::string> kv;
  std::string get(const std::string& k, const std::string& def) const {
    auto it = kv.find(k);
    return it == kv.end() ? def : it->second;
  }
  int geti(const std::string& k, int def) const { return std::stoi(get(k, std::to_string(def))); }
  double getd(const std::string& k, double def) const {
    auto it = kv.find(k);
    return it == kv.end() ? def : std::stod(it->second);
  }
  bool getb(const std::string& k, bool def) const { return geti(k, def ? 1 : 0) != 0; }
};

std::vector<int64_t> cu_from_lengths(const std::string& list) {
  std::vector<int64_t> cu{0};
  std::stringstream ss(list);
  std::string item;
  while (std::getline(ss, item, ',')) cu.push_back(cu.back() + std::stoll(item));
  return cu;
}

std::vector<std::vector<int>> parse_sources(std::string text, int L) {
  std::vector<std::vector<int>> s;
  std::string part;
  for (char& ch : text)
    if (ch == '|') ch = ';';  // '|' and ';' both separate the per-layer lists
  std::stringstream ss(text);
  while (std::getline(ss, part, ';')) {
    std::vector<int> js;
    std::stringstream ps(part);
    std::string j;
    while (std::getline(ps, j, ','))
      if (!j.empty()) js.push_back(std::stoi(j));
    s.push_back(js);
  }
  if (!text.empty() && text.back() == ';') s.emplace_back();  // getline drops a trailing empty list
  if (static_cast<int>(s.size()) == L - 1) s.insert(s.begin(), std::vector<int>{});
  return s;
}

LambdaGranularity parse_granularity(const std::string& s) {
  if (s == "elementwise") return LambdaGranularity::Elementwise;
  if (s == "head") return LambdaGranularity::Head;
  if (s == "scalar") return LambdaGranularity::Scalar;
  throw std::invalid_argument("unknown granularity " + s);
}

// ---- one case
// -------------------------------------------------------------------------------------
template <class Config>
int run(const std::string& method, const Config& cfg, const AttentionConfig& attn, int L,
        uint64_t seed, const fs::path& dir) {
  auto c = make_case(cfg, seed);
  auto fwd = forward(c.cfg, c.inputs);
  auto grad = backward(c.cfg, c.inputs, fwd, c.dout);

  fs::create_directories(dir);
  std::vector<std::string> inputs, outputs, aux;
  visit_inputs(c.cfg, c.inputs, [&](const std::string& n, Tensor& t) {
    inputs.push_back(n);
    write_npy(dir / (n + ".npy"), t);
  });
  visit_inputs(c.cfg, grad, [&](const std::string& n, Tensor& t) {
    write_npy(dir / ("grad." + n + ".npy"), t);
  });
  size_t l = 0;
  visit_outputs(c.cfg, fwd, [&](const std::string& n, Tensor& t) {
    outputs.push_back(n);
    write_npy(dir / (n + ".npy"), t);
    write_npy(dir / ("d" + n + ".npy"), c.dout[l++]);
  });
  visit_aux(c.cfg, fwd, [&](const std::string& n, Tensor& t) {
    aux.push_back(n);
    write_npy(dir / (n + ".npy"), t);
  });

  Keys k{{"method", json_str(method)},
         {"num_layers", std::to_string(L)},
         {"num_heads", std::to_string(attn.num_heads)},
         {"num_kv_heads", std::to_string(attn.num_kv_heads)},
         {"head_dim", std::to_string(attn.head_dim)},
         {"cu_seqlens_q", json_int_list(attn.cu_seqlens_q)},
         {"cu_seqlens_k", json_int_list(attn.cu_seqlens_k)},
         {"causal", json_bool(attn.causal)},
         {"window_left", std::to_string(attn.window_left)},
         {"softmax_scale", json_num(attn.scale())},
         {"inputs", json_str_list(inputs)},
         {"outputs", json_str_list(outputs)},
         {"aux", json_str_list(aux)},
         {"seed", std::to_string(seed)}};
  for (auto& e : method_keys(c.cfg)) k.push_back(e);
  std::ofstream js(dir / "config.json");
  js << "{\n";
  for (size_t i = 0; i < k.size(); ++i)
    js << "  " << json_str(k[i].first) << ": " << k[i].second << (i + 1 < k.size() ? ",\n" : "\n");
  js << "}\n";
  if (!js) throw std::runtime_error("cannot write config.json");

  double loss = testing::stack_loss(c.cfg, c.inputs, c.dout);
  std::printf("%s: method=%s L=%d H=%d H_kv=%d d=%d N=%lld seed=%llu inputs=%zu loss=%.17g\n",
              dir.string().c_str(), method.c_str(), L, attn.num_heads, attn.num_kv_heads,
              attn.head_dim, static_cast<long long>(attn.num_tokens_q()),
              static_cast<unsigned long long>(seed), inputs.size(), loss);
  return 0;
}

}  // namespace

int main(int argc, char** argv) try {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (a.rfind("--", 0) != 0 || i + 1 >= argc) {
      std::fprintf(stderr, "bad argument %s\n%s", a.c_str(), kUsage);
      return 2;
    }
    std::string key = a.substr(2);
    // Accepted aliases (the contract's key names, as tests/oracle/run_oracle.py spells them).
    static const std::map<std::string, std::string> kAliases = {
        {"seqlens-q", "seqlens"},
        {"lambda-granularity", "granularity"},
        {"num-component-heads", "component-heads"}};
    if (auto it = kAliases.find(key); it != kAliases.end()) key = it->second;
    o.kv[key] = argv[++i];
  }
  const std::string method = o.get("method", "");
  if (method.empty() || !o.kv.count("out")) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  const uint64_t seed = std::stoull(o.get("seed", "0"));
  const fs::path dir = o.get("out", "");

  AttentionConfig attn;
  attn.num_heads = o.geti("heads", 4);
  attn.num_kv_heads = o.geti("kv-heads", 2);
  attn.head_dim = o.geti("head-dim", 8);
  attn.cu_seqlens_q = cu_from_lengths(o.get("seqlens", "5,0,7"));
  attn.cu_seqlens_k =
      o.kv.count("seqlens-k") ? cu_from_lengths(o.get("seqlens-k", "")) : attn.cu_seqlens_q;
  require(method == "vanilla" || attn.cu_seqlens_k == attn.cu_seqlens_q,
          "--seqlens-k differs from --seqlens: only vanilla has separate key lengths");
  attn.causal = o.getb("causal", true);
  attn.window_left = o.geti("window-left", -1);
  attn.softmax_scale = o.getd("scale", 0.0);
  attn.softmax_scale = attn.scale();
  validate(attn);
  const int L = o.geti("layers", 4);
  require(L >= 1, "--layers must be >= 1");
  TokenLocalConfig local;
  local.qk_norm = o.getb("qk-norm", true);
  local.rope = o.getb("rope", true);
  local.rope_theta = o.getd("rope-theta", 10000.0);
  local.norm_eps = o.getd("norm-eps", 1e-6);

  if (method == "vanilla") return run(method, VanillaConfig{attn, L}, attn, L, seed, dir);
  if (method == "depth") {
    DepthConfig c{attn, L, {}, o.geti("stride", 2), o.geti("recent-window", 1), local};
    if (o.kv.count("sources")) {
      c.sources = parse_sources(o.get("sources", ""), L);
      c.stride = 0;  // explicit lists: nothing for the oracle to re-derive
      c.recent_window = 0;
    } else {
      c.sources = depth_sources(L, c.stride, c.recent_window);
    }
    return run(method, c, attn, L, seed, dir);
  }
  if (method == "resformer")
    return run(method, ResFormerConfig{attn, L, parse_granularity(o.get("granularity", "scalar"))},
               attn, L, seed, dir);
  if (method == "svformer") return run(method, SVFormerConfig{attn, L}, attn, L, seed, dir);
  if (method == "exoformer") {
    ExoFormerConfig c;
    c.attn = attn;
    c.num_layers = L;
    c.dynamic = o.getb("dynamic", true);
    c.granularity = parse_granularity(o.get("granularity", "elementwise"));
    c.anchor_eps = o.getd("anchor-eps", 1e-6);
    c.norm_eps = local.norm_eps;
    c.rope = local.rope;
    c.rope_theta = local.rope_theta;
    return run(method, c, attn, L, seed, dir);
  }
  if (method == "mea") {
    MeaConfig c;
    c.attn = attn;
    c.num_layers = L;
    c.num_component_heads = o.geti("component-heads", attn.num_kv_heads);
    const std::string site = o.get("site", "kv");
    require(site == "kv" || site == "output", "--site is kv or output");
    c.site = site == "kv" ? MeaSite::KeyValue : MeaSite::Output;
    c.gn_eps = o.getd("gn-eps", 1e-5);
    c.rope = local.rope;
    c.rope_theta = local.rope_theta;
    return run(method, c, attn, L, seed, dir);
  }
  if (method == "gated") {
    const std::string gate = o.get("gate", "elementwise");
    require(gate == "elementwise" || gate == "headwise", "--gate is elementwise or headwise");
    GatedConfig c{attn, L, gate == "elementwise" ? GateKind::Elementwise : GateKind::Headwise,
                  local};
    return run(method, c, attn, L, seed, dir);
  }
  std::fprintf(stderr, "unknown method %s\n%s", method.c_str(), kUsage);
  return 2;
} catch (const std::exception& e) {
  std::fprintf(stderr, "strata_reference_dump: %s\n", e.what());
  return 1;
}
