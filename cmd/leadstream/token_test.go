package main

import (
	"slices"
	"testing"
)

func TestBaseAlias(t *testing.T) {
	got := baseAlias([]string{"--base", "https://t.example", "--base=https://u.example", "-base", "x", "--lead", "base"})
	want := []string{"-public-url", "https://t.example", "-public-url=https://u.example", "-public-url", "x", "--lead", "base"}
	if !slices.Equal(got, want) {
		t.Fatalf("baseAlias = %q, want %q", got, want)
	}
}
