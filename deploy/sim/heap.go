package sim

// The event queue's and the flow model's heaps, on the concrete slices,
// without container/heap's interface calls and the boxing of each pushed
// and popped element. The flow model's takes container/heap's steps in the
// same order, so it pops equal shares in the same order.

func (q events) less(i, j int) bool {
	a, b := q[i], q[j]
	if a.ns != b.ns {
		return a.ns < b.ns
	}
	if a.key != b.key {
		return a.key.less(b.key)
	}
	return a.seq < b.seq
}

// The event queue is a 4-ary heap: half the depth of a binary one, and a
// node's children share a cache line or two, which counts at N = 10,000
// (millions of pending events). Its order is total (time, key, then push
// order), so it pops the same sequence as any other heap.

func (q *events) push(e *event) {
	*q = append(*q, e)
	h := *q
	for j := len(h) - 1; j > 0; {
		i := (j - 1) / 4 // parent
		if !h.less(j, i) {
			break
		}
		h[i], h[j] = h[j], h[i]
		j = i
	}
}

func (q *events) pop() *event {
	h := *q
	n := len(h) - 1
	h[0], h[n] = h[n], h[0]
	for i := 0; ; {
		c := 4*i + 1
		if c >= n {
			break
		}
		m := c // the least child
		for k := c + 1; k < min(c+4, n); k++ {
			if h.less(k, m) {
				m = k
			}
		}
		if !h.less(m, i) {
			break
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
	e := h[n]
	h[n] = nil
	*q = h[:n]
	return e
}

func (h shares) less(i, j int) bool {
	if h[i].v != h[j].v {
		return h[i].v < h[j].v
	}
	return h[i].r < h[j].r
}

func (h shares) down(i0, n int) {
	for i := i0; ; {
		j1 := 2*i + 1
		if j1 >= n || j1 < 0 {
			break
		}
		j := j1
		if j2 := j1 + 1; j2 < n && h.less(j2, j1) {
			j = j2
		}
		if !h.less(j, i) {
			break
		}
		h[i], h[j] = h[j], h[i]
		i = j
	}
}

func (h shares) init() {
	n := len(h)
	for i := n/2 - 1; i >= 0; i-- {
		h.down(i, n)
	}
}

func (h *shares) push(s share) {
	*h = append(*h, s)
	hh := *h
	for j := len(hh) - 1; ; {
		i := (j - 1) / 2
		if i == j || !hh.less(j, i) {
			break
		}
		hh[i], hh[j] = hh[j], hh[i]
		j = i
	}
}

func (h *shares) pop() share {
	hh := *h
	n := len(hh) - 1
	hh[0], hh[n] = hh[n], hh[0]
	hh.down(0, n)
	s := hh[n]
	*h = hh[:n]
	return s
}
