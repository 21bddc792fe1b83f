package vault

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"strings"
	"time"

	awsv2 "github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/smithy-go/logging"
	"github.com/hashicorp/vault/api"

	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/cfgfile"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/config"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/msaerr"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/redact"
)

// workload is a login with a workload identity: a Kubernetes service-account
// token or a JWT read from a file at every login, or an AWS IAM identity
// proven by a signed sts:GetCallerIdentity request.
type workload struct {
	method             string // methodKubernetes, methodJWT or methodAWS
	mountVar, mount    string
	roleVar, role      string
	fileVar, file      string // the JWT's file (kubernetes, jwt)
	awsRegion, awsHead string
	aws                awsv2.Config // aws: the SDK's default credential chain

	// Under Provider.mu:
	jwt     string            // the JWT read for the coming login
	pending [sha256.Size]byte // its hash
	hash    [sha256.Size]byte // the hash of the JWT of the current login
}

// authFunc is an api.AuthMethod made of a function.
type authFunc func(ctx context.Context, c *api.Client) (*api.Secret, error)

func (f authFunc) Login(ctx context.Context, c *api.Client) (*api.Secret, error) { return f(ctx, c) }

// newWorkload prepares a workload login for s (Kubernetes, JWT or AWS IAM).
func newWorkload(ctx context.Context, s Settings) (*workload, error) {
	w := &workload{method: s.Method}
	switch s.Method {
	case methodKubernetes:
		w.mountVar, w.mount, w.roleVar, w.role, w.fileVar, w.file = EnvK8sMount, s.K8sMount, EnvK8sRole, s.K8sRole, EnvK8sTokenPath, s.K8sTokenPath
	case methodJWT:
		w.mountVar, w.mount, w.roleVar, w.role, w.fileVar, w.file = EnvJWTMount, s.JWTMount, EnvJWTRole, s.JWTRole, EnvJWTPath, s.JWTPath
	case methodAWS:
		w.mountVar, w.mount, w.roleVar, w.role = EnvAWSMount, s.AWSMount, EnvAWSRole, s.AWSRole
		w.awsRegion, w.awsHead = s.AWSRegion, s.AWSHeader
		// The SDK's default credential chain (environment, profiles, web
		// identity, container and instance roles), its own clients going
		// through the egress transport like every backend client.
		cfg, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithLogger(logging.Nop{}), awsconfig.WithClientLogMode(0),
			awsconfig.WithHTTPClient(s.Egress.AWSClient()), awsconfig.WithRegion(s.AWSRegion))
		if err != nil {
			return nil, msaerr.Wrap(msaerr.NotConfigured, err,
				"cannot load the AWS configuration for the Vault aws login (AWS_PROFILE, AWS_CONFIG_FILE, AWS_SHARED_CREDENTIALS_FILE)")
		}
		w.aws = cfg
	}
	return w, nil
}

// what names the login in messages: "kubernetes login at auth/kubernetes".
func (w *workload) what() string { return w.method + " login at auth/" + w.mount }

// auth logs in: one write to auth/<mount>/login.
func (w *workload) auth() api.AuthMethod {
	return authFunc(func(ctx context.Context, c *api.Client) (*api.Secret, error) {
		var body map[string]any
		if w.method == methodAWS {
			var err error
			if body, err = w.awsLoginData(ctx, time.Now()); err != nil {
				return nil, err
			}
			body["role"] = w.role
		} else {
			body = map[string]any{"role": w.role, "jwt": w.jwt}
		}
		return c.Logical().WriteWithContext(ctx, "auth/"+w.mount+"/login", body)
	})
}

// readJWT reads the token file again (kubelet and CI rotate it), bounded like
// every configuration file, and keeps it for the coming login. It reports
// whether the content differs from the current login's.
func (w *workload) readJWT(ctx context.Context) (changed bool, err error) {
	b, err := cfgfile.Read(ctx, w.fileVar, w.file)
	if err != nil {
		return false, err
	}
	jwt := strings.TrimSpace(string(b))
	if jwt == "" {
		return false, msaerr.New(msaerr.NotConfigured, w.fileVar, "%s=%s is empty: it should hold the JWT for %s=%s",
			w.fileVar, redact.Echo(w.file), w.roleVar, w.role)
	}
	w.jwt, w.pending = jwt, sha256.Sum256([]byte(jwt))
	return w.pending != w.hash, nil
}

// loggedIn records that the pending JWT's login succeeded.
func (w *workload) loggedIn() {
	w.hash, w.jwt = w.pending, ""
}

// The request Vault's aws auth method replays to STS: the body of
// sts:GetCallerIdentity and the header that binds it to one Vault server.
const (
	stsBody         = "Action=GetCallerIdentity&Version=2011-06-15"
	iamServerHeader = "X-Vault-AWS-IAM-Server-ID"
)

// stsEndpoint is the STS endpoint the request is signed for: the global one
// for us-east-1 (as the Vault CLI signs), the regional one otherwise.
func stsEndpoint(region string) string {
	if region == "us-east-1" {
		return "https://sts.amazonaws.com/"
	}
	return "https://sts." + region + ".amazonaws.com/"
}

// awsLoginData signs sts:GetCallerIdentity with the SDK's credentials and
// returns the login fields of the aws auth method's iam type (what the Vault
// CLI sends). The request is never sent by us: Vault replays it to STS.
func (w *workload) awsLoginData(ctx context.Context, now time.Time) (map[string]any, error) {
	creds, err := w.aws.Credentials.Retrieve(ctx)
	if err != nil {
		var me *msaerr.Error
		if errors.As(err, &me) {
			return nil, me // refused by the egress rules
		}
		return nil, msaerr.New(msaerr.Backend, "AWS_PROFILE",
			"no usable AWS credentials to sign the Vault aws login for %s=%s (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or a role): %s",
			w.roleVar, w.role, redact.ServerText(err.Error()))
	}
	endpoint := stsEndpoint(w.awsRegion)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(stsBody))
	if err != nil {
		return nil, msaerr.Wrap(msaerr.Internal, err, "building the STS request")
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	if w.awsHead != "" {
		req.Header.Set(iamServerHeader, w.awsHead)
	}
	sum := sha256.Sum256([]byte(stsBody))
	if err := v4.NewSigner().SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), "sts", w.awsRegion, now); err != nil {
		return nil, msaerr.Wrap(msaerr.Internal, err, "signing the STS request")
	}
	headers, err := json.Marshal(req.Header)
	if err != nil {
		return nil, msaerr.Wrap(msaerr.Internal, err, "encoding the STS request")
	}
	enc := base64.StdEncoding.EncodeToString
	return map[string]any{
		"iam_http_request_method": http.MethodPost,
		"iam_request_url":         enc([]byte(endpoint)),
		"iam_request_body":        enc([]byte(stsBody)),
		"iam_request_headers":     enc(headers),
	}, nil
}

// jwtShape matches a JWT (three base64url parts, the first a JSON header):
// a server that quotes the token back never gets it into a message.
var jwtShape = regexp.MustCompile(`eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.?[A-Za-z0-9_-]*`)

// refused reports whether an HTTP status is a definite refusal: a 4xx other
// than 408 (timeout) and 429 (throttling), which are transient.
func refused(status int) bool {
	return status >= 400 && status < 500 && status != http.StatusRequestTimeout && status != http.StatusTooManyRequests
}

// describeWorkloadLogin names what to change when a workload login fails:
// the mount when the method is not there, else the role and the identity
// (the file holding the JWT, or the AWS identity), never the JWT itself.
func (p *Provider) describeWorkloadLogin(err error) error {
	w := p.wl
	what := w.what()
	identity := "the token in " + w.fileVar + "=" + redact.Echo(w.file)
	if w.method == methodAWS {
		identity = "the AWS identity that signed the request (AWS_* credentials, signed for " + EnvAWSRegion + "=" + w.awsRegion + ")"
	}
	var re *api.ResponseError
	if errors.As(err, &re) {
		reason := jwtShape.ReplaceAllString(redact.ServerText(strings.Join(re.Errors, "; ")), "***")
		if reason == "" {
			reason = http.StatusText(re.StatusCode)
		}
		switch {
		case re.StatusCode == http.StatusNotFound || strings.Contains(reason, "no handler for route"):
			return msaerr.New(msaerr.NotConfigured, w.mountVar, "%s failed (HTTP %d: %s): is the %s auth method enabled at %s=%s%s?",
				what, re.StatusCode, reason, w.method, w.mountVar, w.mount, p.inNamespace()).Reject()
		case re.StatusCode == http.StatusForbidden:
			// Vault asks for a token on a path that is no login path: the
			// method is not enabled there (or not in this namespace).
			return msaerr.New(msaerr.NotConfigured, w.mountVar,
				"%s refused (HTTP 403: %s): is the %s auth method enabled at %s=%s%s? Otherwise check %s=%s and %s",
				what, reason, w.method, w.mountVar, w.mount, p.inNamespace(), w.roleVar, w.role, identity).Reject()
		case refused(re.StatusCode):
			return msaerr.New(msaerr.Backend, w.roleVar, "%s refused (HTTP %d: %s): check %s=%s and %s",
				what, re.StatusCode, reason, w.roleVar, w.role, identity).Reject()
		}
		return msaerr.New(msaerr.Backend, "", "%s failed with HTTP %d: %s", what, re.StatusCode, reason)
	}
	if strings.Contains(err.Error(), "did not return client token") || strings.Contains(err.Error(), "response did not return") {
		return msaerr.New(msaerr.NotConfigured, w.mountVar, "%s returned no token: is the %s auth method enabled at %s=%s?",
			what, w.method, w.mountVar, w.mount)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return msaerr.New(msaerr.Backend, config.EnvTimeout, "%s: no answer from %s=%s within the deadline", what, p.s.Vars.Addr, redact.URL(p.s.Addr))
	}
	return p.describeTransport(what, err)
}
