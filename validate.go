package flashorder

// ValidateSKU checks that sku is 1..64 characters of [A-Za-z0-9_.-].
func ValidateSKU(sku string) error {
	if !validName(sku, 64, false) {
		return Errorf(EINVALID, "sku must be 1..64 characters of A-Z a-z 0-9 _ . -")
	}
	return nil
}

// ValidateUserID checks that id is 1..64 characters of [A-Za-z0-9_.:-].
func ValidateUserID(id string) error {
	if !validName(id, 64, true) {
		return Errorf(EINVALID, "user_id must be 1..64 characters of A-Z a-z 0-9 _ . : -")
	}
	return nil
}

// MaxOrderID bounds an order id. The ids orderd makes are UUIDs (36
// characters); the bound leaves room without letting a path reach the
// database with anything a column could refuse.
const MaxOrderID = 64

// ValidOrderID reports whether id can be an order id: 1..MaxOrderID
// characters of [A-Za-z0-9_.:-]. Another id names no order, so the API
// answers it without asking the database.
func ValidOrderID(id string) bool { return validName(id, MaxOrderID, true) }

// ValidateIdempotencyKey checks that key is 1..255 printable ASCII characters.
func ValidateIdempotencyKey(key string) error {
	if len(key) == 0 || len(key) > MaxIdempotencyKey {
		return Errorf(EINVALID, "Idempotency-Key must be 1..%d printable ASCII characters", MaxIdempotencyKey)
	}
	for i := 0; i < len(key); i++ {
		if key[i] < 0x20 || key[i] > 0x7e {
			return Errorf(EINVALID, "Idempotency-Key must be 1..%d printable ASCII characters", MaxIdempotencyKey)
		}
	}
	return nil
}

func validName(s string, max int, colon bool) bool {
	if len(s) == 0 || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '.', c == '-':
		case c == ':' && colon:
		default:
			return false
		}
	}
	return true
}
