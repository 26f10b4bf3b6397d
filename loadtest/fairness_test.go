package loadtest_test

import (
	"math"
	"testing"

	"github.com/flashorder/flashorder/loadtest"
)

func closeTo(a, b, eps float64) bool { return math.Abs(a-b) <= eps }

// TestKendallTauB: identical orders give 1, reversed -1, and small cases
// computed by hand, with and without ties.
func TestKendallTauB(t *testing.T) {
	x := []float64{1, 2, 3, 4, 5, 6}
	rev := []float64{6, 5, 4, 3, 2, 1}
	if tau := loadtest.KendallTauB(x, x); tau != 1 {
		t.Errorf("tau of identical orders = %v, want 1", tau)
	}
	if tau := loadtest.KendallTauB(x, rev); tau != -1 {
		t.Errorf("tau of reversed orders = %v, want -1", tau)
	}
	// 1 2 3 4 against 1 3 2 4: 6 pairs, one discordant: (5-1)/6.
	if tau := loadtest.KendallTauB([]float64{1, 2, 3, 4}, []float64{1, 3, 2, 4}); !closeTo(tau, 4.0/6, 1e-12) {
		t.Errorf("tau = %v, want 2/3", tau)
	}
	// Ties in y: x 1 2 3 4, y 1 1 2 2. n0 = 6, pairs tied in y 2, none in
	// x, 4 concordant: 4 / sqrt(6 * 4).
	if tau := loadtest.KendallTauB([]float64{1, 2, 3, 4}, []float64{1, 1, 2, 2}); !closeTo(tau, 4/math.Sqrt(24), 1e-12) {
		t.Errorf("tau-b with ties = %v, want %v", tau, 4/math.Sqrt(24))
	}
	// Ties in both: x 1 1 2 3, y 1 2 2 3. Pairs: (1,2) tied x; (1,3) C;
	// (1,4) C; (2,3) tied y; (2,4) C; (3,4) C: 4 / sqrt(5 * 5).
	if tau := loadtest.KendallTauB([]float64{1, 1, 2, 3}, []float64{1, 2, 2, 3}); !closeTo(tau, 0.8, 1e-12) {
		t.Errorf("tau-b = %v, want 0.8", tau)
	}
	// Gamma leaves the ties out: x 1 2 3 4, y 1 1 2 2 has 4 concordant
	// pairs and no discordant one: 1; 1 2 3 4 against 1 3 2 4: 5 C, 1 D.
	if g := loadtest.GoodmanKruskalGamma([]float64{1, 2, 3, 4}, []float64{1, 1, 2, 2}); g != 1 {
		t.Errorf("gamma with ties = %v, want 1", g)
	}
	if g := loadtest.GoodmanKruskalGamma([]float64{1, 2, 3, 4}, []float64{1, 3, 2, 4}); !closeTo(g, 4.0/6, 1e-12) {
		t.Errorf("gamma = %v, want 2/3", g)
	}
	if tau := loadtest.KendallTauB([]float64{1}, []float64{1}); !math.IsNaN(tau) {
		t.Errorf("tau of one value = %v, want NaN", tau)
	}
	if tau := loadtest.KendallTauB([]float64{1, 2, 3}, []float64{5, 5, 5}); !math.IsNaN(tau) {
		t.Errorf("tau against a constant = %v, want NaN", tau)
	}
}

// TestChiSquare: the statistic and p-value of known tables, and the
// survival function at known points.
func TestChiSquare(t *testing.T) {
	// A 2x2 table: rows 10 20 / 30 40. Totals 30, 70, 40, 60, N 100.
	// E = 12 18 / 28 42; sum (O-E)^2/E = 4/12 + 4/18 + 4/28 + 4/42.
	cs := loadtest.ChiSquareTest([][]int64{{10, 20}, {30, 40}})
	want := 4.0/12 + 4.0/18 + 4.0/28 + 4.0/42
	if !closeTo(cs.Stat, want, 1e-12) || cs.DF != 1 || cs.N != 100 {
		t.Errorf("2x2: %+v, want stat %v df 1", cs, want)
	}
	// p for chi-square 0.7937 on 1 df: 0.3730 (R: pchisq(0.7937, 1, lower=FALSE)).
	if !closeTo(cs.P, 0.37300, 2e-4) {
		t.Errorf("2x2 p = %v, want 0.3730", cs.P)
	}
	// Independent rows: statistic 0, p 1.
	if cs := loadtest.ChiSquareTest([][]int64{{10, 20, 30}, {20, 40, 60}}); !closeTo(cs.Stat, 0, 1e-12) || cs.DF != 2 || !closeTo(cs.P, 1, 1e-12) {
		t.Errorf("independent: %+v", cs)
	}
	// Empty rows and columns are left out; one column left: no test.
	if cs := loadtest.ChiSquareTest([][]int64{{5, 0}, {0, 0}, {7, 0}}); cs.DF != 0 || cs.P != 1 || cs.Rows != 2 || cs.Cols != 1 {
		t.Errorf("degenerate: %+v", cs)
	}
	// Known quantiles: the 95th percentile of chi-square(1) is 3.841459,
	// of chi-square(4) 9.487729, of chi-square(10) 18.307038; the median of
	// chi-square(2) is 2 ln 2.
	for _, c := range []struct{ x, k, p float64 }{{3.841459, 1, 0.05}, {9.487729, 4, 0.05}, {18.307038, 10, 0.05},
		{2 * math.Ln2, 2, 0.5}, {100, 4, 1.3e-20}, {0.01, 3, 0.99973}} {
		if p := loadtest.ChiSquareSF(c.x, c.k); !closeTo(p, c.p, math.Max(1e-6, c.p*1e-3)) {
			t.Errorf("P(chi2(%g) >= %g) = %v, want %v", c.k, c.x, p, c.p)
		}
	}
}

// TestOrderTable: rows by join time in equal groups, columns by admission
// moment, never splitting a moment, and a last column for never admitted.
func TestOrderTable(t *testing.T) {
	inf := math.Inf(1)
	join := []float64{1, 2, 3, 4, 5, 6}
	admit := []float64{10, 10, 10, 20, inf, inf}
	tab := loadtest.OrderTable(join, admit, 2, 2)
	// Rows: joins 1-3 and 4-6. Columns: moment 10 (three tie, kept
	// together), moment 20, never.
	want := [][]int64{{3, 0, 0}, {0, 1, 2}}
	for i := range want {
		for j := range want[i] {
			if tab[i][j] != want[i][j] {
				t.Fatalf("table %v, want %v", tab, want)
			}
		}
	}
}
