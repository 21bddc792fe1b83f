package aws

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/config"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/msaerr"
)

func spec(t *testing.T, env config.Env) Settings {
	t.Helper()
	sp, err := Factory(env, &config.Config{Timeout: time.Second, MaxRetries: 2})
	if err != nil {
		t.Fatalf("Factory(%v): %v", env, err)
	}
	p, err := sp.New(context.Background())
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p.(*Provider).s
}

func TestSettings(t *testing.T) {
	const arnID = "arn:aws:secretsmanager:eu-west-3:123456789012:secret:mlflow/auth-AbCdEf"
	s := spec(t, config.Env{"MLFLOW_AWS_SECRET_ID": arnID, "AWS_REGION": "us-east-1"})
	if s.Region != "eu-west-3" {
		t.Errorf("the ARN's region must win: %q", s.Region)
	}
	s = spec(t, config.Env{"MLFLOW_AWS_SECRET_NAME": "mlflow/auth", "AWS_DEFAULT_REGION": "ap-south-1"})
	if s.SecretID != "mlflow/auth" || s.Region != "ap-south-1" {
		t.Errorf("alias and default region: %+v", s)
	}
	for v, stage := range map[string]bool{"AWSCURRENT": true, "AWSPENDING": true, "my-custom-stage": true,
		"EXAMPLE1-90ab-cdef-fedc-ba987EXAMPLE": false, "a1b2c3d4-5678-90ab-cdef-EXAMPLE11111": false,
		"01234567890123456789012345678901": false} {
		s = spec(t, config.Env{"MLFLOW_AWS_SECRET_ID": "x", "AWS_REGION": "us-east-1", "MLFLOW_AWS_SECRET_VERSION": v})
		if (s.Stage == v) != stage || (s.VersionID == v) == stage {
			t.Errorf("%q: stage=%q version id=%q", v, s.Stage, s.VersionID)
		}
	}
	retries := map[string]int{"MLFLOW_AWS_MAX_RETRIES": 4}
	s = spec(t, config.Env{"MLFLOW_AWS_SECRET_ID": "x", "AWS_REGION": "us-east-1", "MLFLOW_AWS_MAX_RETRIES": "4"})
	if s.MaxAttempts != retries["MLFLOW_AWS_MAX_RETRIES"]+1 {
		t.Errorf("MaxAttempts = %d", s.MaxAttempts)
	}
	s = spec(t, config.Env{"MLFLOW_AWS_SECRET_ID": "x", "AWS_REGION": "us-east-1", "AWS_MAX_ATTEMPTS": "7",
		"MLFLOW_SECRETS_MAX_RETRIES": "1"})
	if s.MaxAttempts != 0 {
		t.Errorf("AWS_MAX_ATTEMPTS must be left to the SDK, got %d", s.MaxAttempts)
	}
}

func TestSettingsErrors(t *testing.T) {
	cases := []struct {
		env      config.Env
		variable string
	}{
		{config.Env{"AWS_REGION": "us-east-1"}, "MLFLOW_AWS_SECRET_ID"},
		{config.Env{"MLFLOW_AWS_SECRET_ID": "arn:aws:s3:::bucket"}, "MLFLOW_AWS_SECRET_ID"},
		{config.Env{"MLFLOW_AWS_SECRET_ID": "x", "MLFLOW_AWS_AUTH_MODE": "sigv4"}, "MLFLOW_AWS_AUTH_MODE"},
		{config.Env{"MLFLOW_AWS_SECRET_ID": "x", "MLFLOW_AWS_TTL_SEC": "x"}, "MLFLOW_AWS_TTL_SEC"},
		{config.Env{"MLFLOW_AWS_SECRET_ID": "x", "MLFLOW_AWS_MAX_RETRIES": "many"}, "MLFLOW_AWS_MAX_RETRIES"},
	}
	for _, c := range cases {
		_, err := Factory(c.env, &config.Config{Timeout: time.Second})
		if err == nil {
			t.Errorf("%v accepted", c.env)
			continue
		}
		if e := msaerr.As(err); e.Variable != c.variable || !strings.Contains(e.Error(), c.variable) {
			t.Errorf("%v: [%s] %q", c.env, e.Variable, e)
		}
	}
}

func TestNoRegion(t *testing.T) {
	t.Setenv("AWS_CONFIG_FILE", "/nonexistent")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_DEFAULT_REGION", "")
	sp, err := Factory(config.Env{"MLFLOW_AWS_SECRET_ID": "x"}, &config.Config{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	_, err = sp.New(context.Background())
	if err == nil || msaerr.As(err).Variable != "AWS_REGION" {
		t.Fatalf("no region: %v", err)
	}
}
