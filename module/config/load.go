package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// ErrNotExist is returned (wrapped) by Load when the file is missing, so that
// the caller can fall back to LocalhostFallback and say so.
var ErrNotExist = fs.ErrNotExist

// LoadError is a problem in a hosts file, located by line and key.
type LoadError struct {
	File string
	Line int    // 0 when unknown
	Key  string // path of the key, e.g. workspace_hosts[0].user
	Msg  string
}

func (e *LoadError) Error() string {
	loc := e.File
	if e.Line > 0 {
		loc += ":" + strconv.Itoa(e.Line)
	}
	if e.Key != "" {
		return fmt.Sprintf("%s: %s: %s", loc, e.Key, e.Msg)
	}
	return loc + ": " + e.Msg
}

// Load reads and validates a hosts.yml. Unknown keys, wrong types and invalid
// values are errors naming the file, the line and the key. Defaults are filled
// in. A missing file returns an error wrapping ErrNotExist.
func Load(path string) (File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return File{}, fmt.Errorf("read hosts file: %w", err)
	}
	return Parse(path, data)
}

// Parse is Load on bytes already read; name is used in errors.
func Parse(name string, data []byte) (File, error) {
	var f File
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return f, &LoadError{File: name, Msg: "file is empty: at least workspace_hosts is required"}
		}
		line, msg := yamlMsg(err)
		return f, &LoadError{File: name, Line: line, Msg: msg}
	}
	d := &decoder{file: name, lines: map[string]int{}}
	doc := &root
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		doc = doc.Content[0]
	}
	if err := d.top(doc, &f); err != nil {
		return f, err
	}
	f.SetDefaults()
	if err := f.Validate(); err != nil {
		var fe *FieldError
		if errors.As(err, &fe) {
			return f, &LoadError{File: name, Line: d.line(fe.Path), Key: fe.Path, Msg: fe.Msg}
		}
		return f, &LoadError{File: name, Msg: err.Error()}
	}
	return f, nil
}

var yamlLineRE = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// yamlMsg splits yaml.v3's "yaml: line 3: ..." into the line and the message.
func yamlMsg(err error) (int, string) {
	m := yamlLineRE.FindStringSubmatch(err.Error())
	if m == nil {
		return 0, strings.TrimPrefix(err.Error(), "yaml: ")
	}
	line, _ := strconv.Atoi(m[1])
	return line, m[2]
}

// decoder walks the YAML tree by hand so that every error can name its line
// and key, and records where each key was for later validation errors.
type decoder struct {
	file  string
	lines map[string]int
}

// line finds the line of a key path, or of its closest recorded parent.
func (d *decoder) line(path string) int {
	for p := path; p != ""; {
		if l, ok := d.lines[p]; ok {
			return l
		}
		cut := -1
		for i := len(p) - 1; i >= 0; i-- {
			if p[i] == '.' || p[i] == '[' {
				cut = i
				break
			}
		}
		if cut < 0 {
			break
		}
		p = p[:cut]
	}
	return 0
}

func (d *decoder) errf(n *yaml.Node, path, format string, args ...any) error {
	return &LoadError{File: d.file, Line: n.Line, Key: path, Msg: fmt.Sprintf(format, args...)}
}

// mapping calls set for each key of a mapping node; set returns false for an
// unknown key.
func (d *decoder) mapping(n *yaml.Node, path string, keys []string, set func(key string, v *yaml.Node, p string) error) error {
	if n.Kind != yaml.MappingNode {
		if n.Tag == "!!null" {
			return nil
		}
		return d.errf(n, path, "want a mapping of keys (%v), got %s", keys, kindName(n))
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		p := k.Value
		if path != "" {
			p = path + "." + k.Value
		}
		if prev, dup := d.lines[p]; dup {
			return d.errf(k, p, "key given twice (first on line %d)", prev)
		}
		known := false
		for _, want := range keys {
			known = known || want == k.Value
		}
		if !known {
			return d.errf(k, p, "unknown key (known keys here: %v)", keys)
		}
		d.lines[p] = k.Line
		if err := set(k.Value, v, p); err != nil {
			return err
		}
	}
	return nil
}

func (d *decoder) top(n *yaml.Node, f *File) error {
	return d.mapping(n, "", []string{"workspace_hosts", "container_defaults", "session_defaults"},
		func(key string, v *yaml.Node, p string) error {
			switch key {
			case "workspace_hosts":
				return d.hosts(v, p, &f.WorkspaceHosts)
			case "container_defaults":
				return d.container(v, p, &f.ContainerDefaults)
			default:
				return d.session(v, p, &f.SessionDefaults)
			}
		})
}

func (d *decoder) hosts(n *yaml.Node, path string, out *[]Host) error {
	if n.Kind != yaml.SequenceNode {
		if n.Tag == "!!null" {
			return nil
		}
		return d.errf(n, path, "want a list of hosts, got %s", kindName(n))
	}
	for i, item := range n.Content {
		p := fmt.Sprintf("%s[%d]", path, i)
		d.lines[p] = item.Line
		var h Host
		err := d.mapping(item, p, []string{"hostname", "user", "pub_hostname", "docker_image", "port", "max_sessions", "bind_address", "docker_socket", "docker_concurrency", "warm"},
			func(key string, v *yaml.Node, p string) error {
				switch key {
				case "hostname":
					return d.str(v, p, &h.Hostname)
				case "user":
					return d.str(v, p, &h.User)
				case "pub_hostname":
					return d.str(v, p, &h.PubHostname)
				case "docker_image":
					return d.str(v, p, &h.DockerImage)
				case "port":
					return d.int(v, p, &h.Port)
				case "max_sessions":
					return d.int(v, p, &h.MaxSessions)
				case "docker_socket":
					return d.str(v, p, &h.DockerSocket)
				case "docker_concurrency":
					return d.int(v, p, &h.DockerConcurrency)
				case "warm":
					return d.int(v, p, &h.Warm)
				default:
					return d.str(v, p, &h.BindAddress)
				}
			})
		if err != nil {
			return err
		}
		if item.Kind != yaml.MappingNode {
			return d.errf(item, p, "want a host (hostname, user, pub_hostname, docker_image), got %s", kindName(item))
		}
		*out = append(*out, h)
	}
	return nil
}

func (d *decoder) container(n *yaml.Node, path string, c *ContainerDefaults) error {
	return d.mapping(n, path, []string{"memory_limit", "shm_size", "resolution", "cpu_limit", "pids_limit", "publish_vnc", "tmp_size", "writable_root"},
		func(key string, v *yaml.Node, p string) error {
			switch key {
			case "memory_limit":
				return d.str(v, p, &c.MemoryLimit)
			case "shm_size":
				return d.str(v, p, &c.ShmSize)
			case "resolution":
				return d.str(v, p, &c.Resolution)
			case "cpu_limit":
				return d.float(v, p, &c.CPULimit)
			case "pids_limit":
				return d.int(v, p, &c.PidsLimit)
			case "tmp_size":
				return d.str(v, p, &c.TmpSize)
			case "writable_root":
				return d.bool(v, p, &c.WritableRoot)
			default:
				return d.bool(v, p, &c.PublishVNC)
			}
		})
}

func (d *decoder) session(n *yaml.Node, path string, s *SessionDefaults) error {
	return d.mapping(n, path, []string{"initial_duration", "extension_duration", "max_extensions"},
		func(key string, v *yaml.Node, p string) error {
			switch key {
			case "initial_duration":
				return d.int(v, p, &s.InitialDuration)
			case "extension_duration":
				return d.int(v, p, &s.ExtensionDuration)
			default:
				var n int
				if err := d.int(v, p, &n); err != nil {
					return err
				}
				s.MaxExtensions = &n
				return nil
			}
		})
}

// Scalars. A value of the wrong YAML type is an error, not a silent
// conversion: `memory_limit: [4g]` or `initial_duration: 1h` are refused.

func (d *decoder) str(n *yaml.Node, p string, out *string) error {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		return d.errf(n, p, "want a string, got %s", kindName(n))
	}
	*out = n.Value
	return nil
}

func (d *decoder) int(n *yaml.Node, p string, out *int) error {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
		return d.errf(n, p, "want a whole number, got %s", kindName(n))
	}
	v, err := strconv.Atoi(n.Value)
	if err != nil {
		return d.errf(n, p, "%q is not a whole number", n.Value)
	}
	*out = v
	return nil
}

func (d *decoder) float(n *yaml.Node, p string, out *float64) error {
	if n.Kind != yaml.ScalarNode || (n.Tag != "!!int" && n.Tag != "!!float") {
		return d.errf(n, p, "want a number, got %s", kindName(n))
	}
	v, err := strconv.ParseFloat(n.Value, 64)
	if err != nil {
		return d.errf(n, p, "%q is not a number", n.Value)
	}
	*out = v
	return nil
}

func (d *decoder) bool(n *yaml.Node, p string, out *bool) error {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
		return d.errf(n, p, "want true or false, got %s", kindName(n))
	}
	return n.Decode(out)
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!null":
			return "nothing (null)"
		case "!!str":
			return fmt.Sprintf("the string %q", n.Value)
		default:
			return fmt.Sprintf("%s %q", n.Tag[2:], n.Value)
		}
	}
	return "an unexpected node"
}
