package serve

import (
	"encoding/json"
	"errors"

	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/protocol"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/provider/vault"
)

// Warm builds what the first request would build on first use (encoding/json's
// encoders and decoders for the requests and replies and for Vault's
// responses), so that the first call does not. The library and the static
// helper start it on a goroutine of its own as they load: it runs beside the
// caller's work up to that call (the Python layer reads MLflow's settings and
// hands over the environment). It touches no state of the engine, and a
// failure (a stale sample, or a panic) only leaves that work to the first call.
func Warm() (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = errors.New("warm-up panicked")
		}
	}()
	var req request
	if err = json.Unmarshal([]byte(`{"id":1,"op":"headers","arg":"https://h","env":null,"deadline_ms":1}`), &req); err != nil {
		return err
	}
	if _, err = json.Marshal(envelope{ID: req.ID, Reply: json.RawMessage(`{}`)}); err != nil {
		return err
	}
	if err = protocol.Warm(); err != nil {
		return err
	}
	return vault.Warm()
}
