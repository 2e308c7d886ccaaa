package config

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// read fills a Config from lookup (os.LookupEnv in Load): each field from
// the variable its envconfig tag names, or from its default tag when the
// variable is unset or set to the empty string (as a compose file's
// `VAR=` or `VAR: ""` leaves it). A value that does not parse is reported
// in one sentence naming the variable and the form it takes; every such
// value is reported at once.
func read(lookup func(string) (string, bool)) (Config, error) {
	var c Config
	v := reflect.ValueOf(&c).Elem()
	var errs []error
	for i := range v.NumField() {
		f := v.Type().Field(i)
		key := f.Tag.Get("envconfig")
		if key == "" {
			continue
		}
		raw, ok := lookup(key)
		if !ok || raw == "" {
			raw = f.Tag.Get("default")
		}
		if raw == "" {
			continue // the zero value
		}
		if err := set(v.Field(i), raw); err != nil {
			errs = append(errs, fmt.Errorf("%s=%q %w", key, raw, err))
		}
	}
	if len(errs) > 0 {
		return Config{}, fmt.Errorf("invalid configuration: %w", errors.Join(errs...))
	}
	return c, nil
}

// durationType is time.Duration's type, which is an int64 to reflect.
var durationType = reflect.TypeFor[time.Duration]()

// set parses raw into field by its type. Its error completes the sentence
// `NAME="value" ...`.
func set(field reflect.Value, raw string) error {
	s := strings.TrimSpace(raw)
	switch {
	case field.Type() == durationType:
		d, err := time.ParseDuration(s)
		if err != nil {
			return errors.New("is not a duration: write a number with a unit, such as 500ms, 30s, 5m or 1h")
		}
		field.SetInt(int64(d))
	case field.Kind() == reflect.String:
		field.SetString(raw)
	case field.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return errors.New("is not a boolean: write true or false")
		}
		field.SetBool(b)
	case field.Kind() == reflect.Int:
		n, err := strconv.ParseInt(s, 10, 0)
		if err != nil {
			return errors.New("is not a whole number")
		}
		field.SetInt(n)
	case field.Kind() == reflect.Float64:
		x, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return errors.New("is not a number")
		}
		field.SetFloat(x)
	default:
		return fmt.Errorf("has a type (%s) the configuration cannot read", field.Type())
	}
	return nil
}
