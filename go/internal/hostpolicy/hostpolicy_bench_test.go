package hostpolicy

import "testing"

func BenchmarkAllowsExact(b *testing.B) {
	p := FromURIs("https://mlflow.corp.com")
	t, _ := ParseTarget("https://mlflow.corp.com/api")
	for b.Loop() {
		if !p.Allows(t) {
			b.Fatal("denied")
		}
	}
}

func BenchmarkAllowsPatterns(b *testing.B) {
	p, _ := Parse("mlflow-*.corp.com,*.example.com,localhost:5000")
	t, _ := ParseTarget("https://a.b.example.com:8443")
	for b.Loop() {
		if !p.Allows(t) {
			b.Fatal("denied")
		}
	}
}

func BenchmarkParseTargetAndAllow(b *testing.B) {
	p := FromURIs("https://mlflow.corp.com")
	for b.Loop() {
		t, _ := ParseTarget("https://mlflow.corp.com")
		if !p.Allows(t) {
			b.Fatal("denied")
		}
	}
}
