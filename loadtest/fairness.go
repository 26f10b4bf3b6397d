package loadtest

// The statistics of a drop through the waiting room: Kendall's tau-b
// between two orders, and Pearson's chi-square test of independence with its
// p-value (the upper tail of the chi-square distribution, from the
// regularized incomplete gamma function).

import (
	"math"
	"sort"
)

// KendallTauB returns Kendall's tau-b between x and y (equal lengths): +1
// when they order the pairs alike, -1 when they order them oppositely,
// adjusted for ties in either. A pair tied in x or in y is neither
// concordant nor discordant; the denominator is sqrt((n0-n1)(n0-n2)), n0 the
// pairs, n1 and n2 those tied in x and in y. It returns NaN for fewer than
// two values or when every value of x or of y is the same. O(n^2): fine up to
// tens of thousands of values.
func KendallTauB(x, y []float64) float64 {
	n := len(x)
	if n != len(y) || n < 2 {
		return math.NaN()
	}
	conc, disc, tiesX, tiesY := pairs(x, y)
	n0 := float64(n) * float64(n-1) / 2
	den := math.Sqrt((n0 - tiesX) * (n0 - tiesY))
	if den == 0 {
		return math.NaN()
	}
	return (conc - disc) / den
}

// GoodmanKruskalGamma returns (C-D)/(C+D) over the pairs of x and y tied in
// neither, C concordant and D discordant: how often two values apart in
// both are in the same order, ties left out (a waiting room admits a round's
// tickets at one moment: their order within it is not seen). NaN without
// such pairs.
func GoodmanKruskalGamma(x, y []float64) float64 {
	if len(x) != len(y) || len(x) < 2 {
		return math.NaN()
	}
	conc, disc, _, _ := pairs(x, y)
	if conc+disc == 0 {
		return math.NaN()
	}
	return (conc - disc) / (conc + disc)
}

// pairs counts the pairs of (x, y) concordant, discordant, tied in x and
// tied in y (a pair tied in both counts in both).
func pairs(x, y []float64) (conc, disc, tiesX, tiesY float64) {
	n := len(x)
	for i := 0; i < n; i++ {
		xi, yi := x[i], y[i]
		for j := i + 1; j < n; j++ {
			dx, dy := x[j]-xi, y[j]-yi
			switch {
			case dx == 0 && dy == 0:
				tiesX++
				tiesY++
			case dx == 0:
				tiesX++
			case dy == 0:
				tiesY++
			case (dx > 0) == (dy > 0):
				conc++
			default:
				disc++
			}
		}
	}
	return conc, disc, tiesX, tiesY
}

// ChiSquare is a chi-square test of independence of a contingency table.
type ChiSquare struct {
	Stat float64 `json:"stat"`
	DF   int     `json:"df"`
	// P is the probability of a statistic at least this large when the
	// rows and the columns are independent.
	P float64 `json:"p"`
	// Rows and Cols are the table's size after empty rows and columns
	// were dropped; N its total.
	Rows int   `json:"rows"`
	Cols int   `json:"cols"`
	N    int64 `json:"n"`
}

// ChiSquareTest tests the independence of the rows and the columns of the
// contingency table t (counts): the statistic sum (O-E)^2/E with E = row
// total x column total / N, on (rows-1)(cols-1) degrees of freedom. Rows and
// columns that hold nothing are left out. With fewer than two rows or
// columns left, DF is 0 and P is 1.
func ChiSquareTest(t [][]int64) ChiSquare {
	var rowSum, colSum []int64
	var rows []int
	cols := 0
	for _, r := range t {
		cols = max(cols, len(r))
	}
	colSum = make([]int64, cols)
	for i, r := range t {
		var s int64
		for j, v := range r {
			s += v
			colSum[j] += v
		}
		if s > 0 {
			rows = append(rows, i)
			rowSum = append(rowSum, s)
		}
	}
	var usedCols []int
	var n int64
	for j, s := range colSum {
		if s > 0 {
			usedCols = append(usedCols, j)
			n += s
		}
	}
	res := ChiSquare{Rows: len(rows), Cols: len(usedCols), N: n, P: 1}
	if len(rows) < 2 || len(usedCols) < 2 {
		return res
	}
	for ri, i := range rows {
		for _, j := range usedCols {
			var o int64
			if j < len(t[i]) {
				o = t[i][j]
			}
			e := float64(rowSum[ri]) * float64(colSum[j]) / float64(n)
			d := float64(o) - e
			res.Stat += d * d / e
		}
	}
	res.DF = (len(rows) - 1) * (len(usedCols) - 1)
	res.P = ChiSquareSF(res.Stat, float64(res.DF))
	return res
}

// ChiSquareSF is the survival function of the chi-square distribution with
// k degrees of freedom: P(X >= x), the regularized upper incomplete gamma
// function Q(k/2, x/2).
func ChiSquareSF(x, k float64) float64 {
	if x <= 0 {
		return 1
	}
	return gammaQ(k/2, x/2)
}

// gammaQ is the regularized upper incomplete gamma function Q(a, x), by its
// series for x < a+1 and its continued fraction beyond (Numerical Recipes,
// 6.2).
func gammaQ(a, x float64) float64 {
	if x <= 0 {
		return 1
	}
	lg, _ := math.Lgamma(a)
	if x < a+1 {
		// P(a, x) by the series, Q = 1 - P.
		sum, del, ap := 1/a, 1/a, a
		for range 1000 {
			ap++
			del *= x / ap
			sum += del
			if math.Abs(del) < math.Abs(sum)*1e-15 {
				break
			}
		}
		return math.Max(0, 1-sum*math.Exp(-x+a*math.Log(x)-lg))
	}
	// The continued fraction, by the modified Lentz method.
	const tiny = 1e-300
	b := x + 1 - a
	c := 1 / tiny
	d := 1 / b
	h := d
	for i := 1; i < 1000; i++ {
		an := -float64(i) * (float64(i) - a)
		b += 2
		d = an*d + b
		if math.Abs(d) < tiny {
			d = tiny
		}
		c = b + an/c
		if math.Abs(c) < tiny {
			c = tiny
		}
		d = 1 / d
		del := d * c
		h *= del
		if math.Abs(del-1) < 1e-15 {
			break
		}
	}
	return math.Exp(-x+a*math.Log(x)-lg) * h
}

// OrderTable is the contingency table of the pre-queue test: the buyers in
// rows by their join time (rows groups of equal size, earliest first) and in
// columns by their admission (cols groups of about equal size in the order
// of admission, a group never splitting buyers admitted at the same moment,
// and a last column for those never admitted: +Inf). Under a uniform
// shuffle, when one joined says nothing of when one is admitted.
func OrderTable(join, admit []float64, rows, cols int) [][]int64 {
	n := len(join)
	if n == 0 || rows < 1 || cols < 1 {
		return nil
	}
	byJoin := make([]int, n)
	for i := range byJoin {
		byJoin[i] = i
	}
	sort.SliceStable(byJoin, func(a, b int) bool { return join[byJoin[a]] < join[byJoin[b]] })
	row := make([]int, n)
	for k, i := range byJoin {
		row[i] = k * rows / n
	}
	byAdmit := make([]int, 0, n)
	for i := range n {
		if !math.IsInf(admit[i], 1) {
			byAdmit = append(byAdmit, i)
		}
	}
	sort.SliceStable(byAdmit, func(a, b int) bool { return admit[byAdmit[a]] < admit[byAdmit[b]] })
	col := make([]int, n)
	for i := range col {
		col[i] = -1 // never admitted
	}
	m := len(byAdmit)
	c := 0
	for k, i := range byAdmit {
		// Move to the next column at a quantile boundary, but only
		// between two distinct admission times.
		if k > 0 && admit[i] != admit[byAdmit[k-1]] && k*cols/m > c {
			c = k * cols / m
		}
		col[i] = c
	}
	t := make([][]int64, rows)
	for r := range t {
		t[r] = make([]int64, cols+1)
	}
	for i := range n {
		j := col[i]
		if j < 0 {
			j = cols
		}
		t[row[i]][j]++
	}
	return t
}
