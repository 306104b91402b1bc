// Fused CPU kernels for the gradient queries of pntm.ops.write_event_grads: each query is one
// binary search in a sequence's sorted event keys and one dot product of a row, done in a loop
// instead of a dozen eager passes over (B, T, H, E) index tensors. The eager code in
// write_event_grads.py (_ReadHeadGradient.at, _WriteHeadGradient.at, _counterfactual) is the
// definition; tests/test_event_kernels.py holds these to it. pntm.ops.event_kernels builds and
// loads this file.
//
// Layout of a sequence's event list (pntm.ops.write_event_list._Events), per batch row b:
//   keys  (n)         sorted event keys: cell * span + 2t + {1 read before, 2 write, 3 read after}
//   cell  (n + 2)     cell of event k at k + 1, -1 before the first and after the last
//   after (n + 1, W)  a cell's value after event k; row n: the initial memory m_0
//   rows  (2n + 1, 2W) U_k (rows 0..n-1), V_k (rows n..2n-1), zeros (row 2n)

#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>

namespace {

int64_t first_at_or_after(const int64_t* keys, int64_t n, int64_t key) {
  return std::lower_bound(keys, keys + n, key) - keys;
}

template <typename scalar_t>
scalar_t dot(const scalar_t* a, const scalar_t* b, int64_t size) {
  scalar_t sum = 0;
  for (int64_t i = 0; i < size; ++i) sum += a[i] * b[i];
  return sum;
}

// One batch row's event list: its sorted keys, the cell of each event, and their sizes.
struct EventRow {
  const int64_t* keys;
  const int64_t* cell;
  int64_t n, span;
};

// G^w_t[y] = <mu_t[y], a_t> - <mu_t[y] * M_{t-1}[y], e_t>: V at a write at (t, y), else U at
// the next event of y, else zeros (_Events.write_rows).
template <typename scalar_t>
struct WriteHead : EventRow {
  using value_type = scalar_t;
  const scalar_t* rows;
  const scalar_t* change;  // (T, 2W): [a_t, -e_t]
  int64_t width;

  scalar_t operator()(int64_t t, int64_t /*head*/, int64_t y) const {
    const int64_t key = y * span + 2 * t + 2;
    const int64_t k0 = first_at_or_after(keys, n, key);
    const bool hit = k0 < n && keys[k0] == key;
    const int64_t k1 = k0 + hit;
    const int64_t row = hit ? n + k0 : (cell[k1 + 1] == y ? k1 : 2 * n);
    return dot(rows + row * width, change + t * width, width);
  }
};

// G^r_t[y] = <dL/dr_t, M_t[y]> + <dL/dA_t, A[y]>: the value after the last event of y before
// the read (m_0 when there is none), and the tag score of y's residue (_ReadHeadGradient.at).
template <typename scalar_t>
struct ReadHead : EventRow {
  using value_type = scalar_t;
  const scalar_t* after;
  const scalar_t* grad;        // (T, H, W)
  const scalar_t* tag_scores;  // (T, H, L)
  const int64_t* offset;       // (H): 1 for a read before the write, 3 after it
  int64_t width, heads, residues;

  scalar_t operator()(int64_t t, int64_t h, int64_t y) const {
    const int64_t k1 = first_at_or_after(keys, n, y * span + 2 * t + offset[h]);
    const int64_t row = cell[k1] == y ? k1 - 1 : n;
    const int64_t th = t * heads + h;
    return dot(after + row * width, grad + th * width, width)
           + tag_scores[th * residues + y % residues];
  }
};

void check(const torch::Tensor& x, const char* name) {
  TORCH_CHECK(x.device().is_cpu() && x.is_contiguous(), name, " must be a contiguous CPU tensor");
}

// out[b, t, h, e] = G_t[y[b, t, h, e]] for head h: y (B, T, H, *extra) long.
template <typename Head, typename MakeHead>
void queries(const MakeHead& make, const torch::Tensor& y, torch::Tensor& out) {
  check(y, "y");
  if (y.numel() == 0) return;  // nothing asked (and no E to divide out)
  const int64_t B = y.size(0), T = y.size(1), H = y.size(2), E = y.numel() / (B * T * H);
  const int64_t* cells = y.data_ptr<int64_t>();
  auto* values = out.data_ptr<typename Head::value_type>();
  at::parallel_for(0, B * T, 64, [&](int64_t begin, int64_t end) {
    for (int64_t bt = begin; bt < end; ++bt) {
      const Head head = make(bt / T);
      const int64_t t = bt % T;
      for (int64_t h = 0; h < H; ++h)
        for (int64_t e = 0; e < E; ++e) {
          const int64_t i = (bt * H + h) * E + e;
          values[i] = head(t, h, cells[i]);
        }
    }
  });
}

// out[b, t, h] = sum over t <= s < stop[b, t, h] (and s < T) of
// G_s[(other[b, t, h] + position[b, s, h] - position[b, t, h]) mod cells] for head h: the
// other choice's future of the jump gradient, following the head's own moves
// (_counterfactual). other, position, stop: (B, T, H) long.
template <typename Head, typename MakeHead>
void counterfactual(const MakeHead& make, const torch::Tensor& other,
                    const torch::Tensor& position, const torch::Tensor& stop, int64_t cells,
                    torch::Tensor& out) {
  check(other, "other");
  check(position, "position");
  check(stop, "stop");
  const int64_t B = other.size(0), T = other.size(1), H = other.size(2);
  const int64_t* start = other.data_ptr<int64_t>();
  const int64_t* end = stop.data_ptr<int64_t>();
  auto* sums = out.data_ptr<typename Head::value_type>();
  at::parallel_for(0, B * T, 16, [&](int64_t begin, int64_t finish) {
    for (int64_t bt = begin; bt < finish; ++bt) {
      const int64_t b = bt / T, t = bt % T;
      const Head head = make(b);
      const int64_t* moves = position.data_ptr<int64_t>() + b * T * H;
      for (int64_t h = 0; h < H; ++h) {
        const int64_t i = bt * H + h;
        const int64_t last = std::min<int64_t>(end[i], T);
        typename Head::value_type sum = 0;
        for (int64_t s = t; s < last; ++s) {
          int64_t y = (start[i] + moves[s * H + h] - moves[t * H + h]) % cells;
          if (y < 0) y += cells;
          sum += head(s, h, y);
        }
        sums[i] = sum;
      }
    }
  });
}


// The heads of batch row b, from the tensors of _Events and the head's gradient vectors.
struct Events {
  torch::Tensor keys, cell;
  int64_t n, span;
  Events(const torch::Tensor& keys, const torch::Tensor& cell, int64_t span)
      : keys(keys), cell(cell), n(keys.size(1)), span(span) {
    check(keys, "keys");
    check(cell, "cell");
  }
  EventRow row(int64_t b) const {
    return {keys.data_ptr<int64_t>() + b * n, cell.data_ptr<int64_t>() + b * (n + 2), n, span};
  }
};

template <typename scalar_t>
auto write_heads(const Events& ev, const torch::Tensor& rows, const torch::Tensor& change) {
  check(rows, "rows");
  check(change, "change");
  const int64_t T = change.size(1), width = change.size(2);
  const scalar_t* r = rows.data_ptr<scalar_t>();
  const scalar_t* c = change.data_ptr<scalar_t>();
  return [&ev, r, c, T, width](int64_t b) {
    WriteHead<scalar_t> head;
    static_cast<EventRow&>(head) = ev.row(b);
    head.rows = r + b * (2 * ev.n + 1) * width;
    head.change = c + b * T * width;
    head.width = width;
    return head;
  };
}

template <typename scalar_t>
auto read_heads(const Events& ev, const torch::Tensor& after, const torch::Tensor& grad,
                const torch::Tensor& tag_scores, const torch::Tensor& offset) {
  check(after, "after");
  check(grad, "grad");
  check(tag_scores, "tag_scores");
  check(offset, "offset");
  const int64_t T = grad.size(1), H = grad.size(2), W = grad.size(3);
  const int64_t L = tag_scores.size(3);
  const scalar_t* a = after.data_ptr<scalar_t>();
  const scalar_t* g = grad.data_ptr<scalar_t>();
  const scalar_t* s = tag_scores.data_ptr<scalar_t>();
  const int64_t* o = offset.data_ptr<int64_t>();
  return [&ev, a, g, s, o, T, H, W, L](int64_t b) {
    ReadHead<scalar_t> head;
    static_cast<EventRow&>(head) = ev.row(b);
    head.after = a + b * (ev.n + 1) * W;
    head.grad = g + b * T * H * W;
    head.tag_scores = s + b * T * H * L;
    head.offset = o;
    head.width = W;
    head.heads = H;
    head.residues = L;
    return head;
  };
}

torch::Tensor write_queries(torch::Tensor keys, torch::Tensor cell, torch::Tensor rows,
                            torch::Tensor change, torch::Tensor y, int64_t span) {
  const Events ev(keys, cell, span);
  auto out = torch::empty(y.sizes(), change.options());
  AT_DISPATCH_FLOATING_TYPES(change.scalar_type(), "write_queries", [&] {
    queries<WriteHead<scalar_t>>(write_heads<scalar_t>(ev, rows, change), y, out);
  });
  return out;
}

torch::Tensor read_queries(torch::Tensor keys, torch::Tensor cell, torch::Tensor after,
                           torch::Tensor grad, torch::Tensor tag_scores, torch::Tensor offset,
                           torch::Tensor y, int64_t span) {
  const Events ev(keys, cell, span);
  auto out = torch::empty(y.sizes(), grad.options());
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "read_queries", [&] {
    queries<ReadHead<scalar_t>>(read_heads<scalar_t>(ev, after, grad, tag_scores, offset), y,
                                out);
  });
  return out;
}

torch::Tensor write_counterfactual(torch::Tensor keys, torch::Tensor cell, torch::Tensor rows,
                                   torch::Tensor change, torch::Tensor other,
                                   torch::Tensor position, torch::Tensor stop, int64_t span,
                                   int64_t cells) {
  const Events ev(keys, cell, span);
  auto out = torch::empty(other.sizes(), change.options());
  AT_DISPATCH_FLOATING_TYPES(change.scalar_type(), "write_counterfactual", [&] {
    counterfactual<WriteHead<scalar_t>>(write_heads<scalar_t>(ev, rows, change), other,
                                        position, stop, cells, out);
  });
  return out;
}

torch::Tensor read_counterfactual(torch::Tensor keys, torch::Tensor cell, torch::Tensor after,
                                  torch::Tensor grad, torch::Tensor tag_scores,
                                  torch::Tensor offset, torch::Tensor other,
                                  torch::Tensor position, torch::Tensor stop, int64_t span,
                                  int64_t cells) {
  const Events ev(keys, cell, span);
  auto out = torch::empty(other.sizes(), grad.options());
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "read_counterfactual", [&] {
    counterfactual<ReadHead<scalar_t>>(read_heads<scalar_t>(ev, after, grad, tag_scores, offset),
                                       other, position, stop, cells, out);
  });
  return out;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("write_queries", &write_queries);
  m.def("read_queries", &read_queries);
  m.def("write_counterfactual", &write_counterfactual);
  m.def("read_counterfactual", &read_counterfactual);
}
