package gormdb

import "testing"

func TestSpreadSegments(t *testing.T) {
	for _, tt := range []struct {
		total int64
		n     int
		want  []int64
	}{
		{0, 16, nil},
		{-1, 16, nil},
		{1, 16, []int64{1}},
		{9, 16, []int64{9}},
		{16, 16, []int64{8, 8}},
		{99, 16, []int64{9, 9, 9, 8, 8, 8, 8, 8, 8, 8, 8, 8}},
		{1000, 16, []int64{63, 63, 63, 63, 63, 63, 63, 63, 62, 62, 62, 62, 62, 62, 62, 62}},
		{1000, 1, []int64{1000}},
		{1000, 0, []int64{1000}},
	} {
		rows := spreadSegments("s", tt.total, tt.n)
		if len(rows) != len(tt.want) {
			t.Errorf("spread %d over %d: %d segments, want %d", tt.total, tt.n, len(rows), len(tt.want))
			continue
		}
		for i, r := range rows {
			if r.SKU != "s" || r.Segment != i || r.Stock != tt.want[i] {
				t.Errorf("spread %d over %d: segment %d is %+v, want stock %d", tt.total, tt.n, i, r, tt.want[i])
			}
		}
	}
}
