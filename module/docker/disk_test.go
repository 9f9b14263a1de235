package docker

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestCreateBodyReadOnlyRootAndTmpfs(t *testing.T) {
	body, err := createBody(RunSpec{Name: "rd-x", Image: "img", ReadOnlyRoot: true, Tmpfs: map[string]string{"/tmp": "size=1"}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(body)
	if !strings.Contains(string(b), `"ReadonlyRootfs":true,"Tmpfs":{"/tmp":"size=1"}`) {
		t.Errorf("create body: %s", b)
	}
	body, _ = createBody(RunSpec{Name: "rd-x", Image: "img"})
	if b, _ := json.Marshal(body); strings.Contains(string(b), "Readonly") || strings.Contains(string(b), "Tmpfs") {
		t.Errorf("unset fields sent: %s", b)
	}
}
