package kubernetes

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

const chartDir = "charts/shoal"

// rendered is one value set's render, every object decoded strictly.
type rendered struct {
	daemonSets   []*appsv1.DaemonSet
	deployments  []*appsv1.Deployment
	statefulSets []*appsv1.StatefulSet
	services     []*corev1.Service
	pdbs         []*policyv1.PodDisruptionBudget
	secrets      []*corev1.Secret
	pvcs         []*corev1.PersistentVolumeClaim
	policies     []*networkingv1.NetworkPolicy
	monitors     []*serviceMonitor
}

// serviceMonitor is the part of the Prometheus Operator's ServiceMonitor
// the chart writes; decoding strictly into it catches a misspelt field.
type serviceMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Selector  metav1.LabelSelector `json:"selector"`
		Endpoints []struct {
			Port     string `json:"port"`
			Path     string `json:"path"`
			Interval string `json:"interval"`
		} `json:"endpoints"`
	} `json:"spec"`
}

// decode renders values and decodes every document into its k8s.io/api
// type, rejecting unknown fields and unknown kinds.
func decode(t *testing.T, values map[string]any) *rendered {
	t.Helper()
	ms, err := Render(chartDir, DefaultRelease, values)
	if err != nil {
		t.Fatal(err)
	}
	r := &rendered{}
	for _, m := range ms {
		for _, doc := range splitDocs(m.Body) {
			var tm metav1.TypeMeta
			if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
				t.Fatalf("%s: %v\n%s", m.Template, err, doc)
			}
			var obj any
			switch tm.APIVersion + " " + tm.Kind {
			case "apps/v1 DaemonSet":
				obj = add(&r.daemonSets)
			case "apps/v1 Deployment":
				obj = add(&r.deployments)
			case "apps/v1 StatefulSet":
				obj = add(&r.statefulSets)
			case "v1 Service":
				obj = add(&r.services)
			case "policy/v1 PodDisruptionBudget":
				obj = add(&r.pdbs)
			case "v1 Secret":
				obj = add(&r.secrets)
			case "v1 PersistentVolumeClaim":
				obj = add(&r.pvcs)
			case "networking.k8s.io/v1 NetworkPolicy":
				obj = add(&r.policies)
			case "monitoring.coreos.com/v1 ServiceMonitor":
				obj = add(&r.monitors)
			default:
				t.Fatalf("%s: unexpected %s %s", m.Template, tm.APIVersion, tm.Kind)
			}
			if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
				t.Fatalf("%s: %s does not decode strictly: %v\n%s", m.Template, tm.Kind, err, doc)
			}
		}
	}
	return r
}

// add appends a new T to list and returns it.
func add[T any](list *[]*T) *T {
	v := new(T)
	*list = append(*list, v)
	return v
}

// valueSets are the renders checked, by name.
var valueSets = map[string]map[string]any{
	"default": nil,
	"secrets given": {
		"secrets": map[string]any{"create": true, "clusterToken": "given-cluster-token", "seedToken": "given-seed-token", "psk": strings.Repeat("ab", 32)},
	},
	"secrets generated": {
		"secrets": map[string]any{"create": true, "name": "my-secrets"},
	},
	"credentials and persistence": {
		"credentials":        map[string]any{"dockerConfigJson": `{"auths":{"registry.example":{"auth":"dXNlcjpwYXNz"}}}`},
		"tracker":            map[string]any{"store": map[string]any{"persistence": map[string]any{"enabled": true, "storageClassName": "fast", "size": "50Gi"}}},
		"registries":         []any{map[string]any{"host": "registry.example"}, map[string]any{"host": "mirror.internal:5000", "endpoint": "http://mirror.internal:5000"}},
		"insecureRegistries": []any{"mirror.internal:5000"},
	},
	"existing credentials": {
		"credentials": map[string]any{"existingSecret": "pull-secret"},
	},
	"monitoring and policy": {
		"serviceMonitor": map[string]any{"enabled": true, "labels": map[string]any{"release": "prometheus"}},
		"networkPolicy":  map[string]any{"enabled": true, "from": []any{map[string]any{"ipBlock": map[string]any{"cidr": "10.0.0.0/16"}}}},
		"agent":          map[string]any{"metricsPort": 5051},
	},
	"sized and rated": {
		"agent": map[string]any{
			"store":        map[string]any{"capacity": "100Gi", "hostPath": "/data/shoal"},
			"uploadRate":   125000000,
			"downloadRate": 250000000,
			"zone":         "eu-west-1a",
			"resources":    map[string]any{"requests": map[string]any{"cpu": "200m", "memory": "256Mi"}, "limits": map[string]any{"memory": "2Gi"}},
		},
		"image":            map[string]any{"digest": "sha256:" + strings.Repeat("0", 64)},
		"p2p":              map[string]any{"security": "noise", "psk": false},
		"tracker":          map[string]any{"store": map[string]any{"capacity": 5368709120}},
		"containerd":       map[string]any{"undoOnStop": false, "configDir": "/etc/containerd"},
		"fullnameOverride": "edge",
	},
	"no containerd": {
		"containerd": map[string]any{"enabled": false},
	},
	"seed jobs": {
		"tracker": map[string]any{"seedJobs": true},
	},
	"seed jobs over listed replicas": {
		"tracker": map[string]any{"seedJobs": true, "replicas": 3, "discovery": "list", "tls": map[string]any{"existingSecret": "tracker-tls"}},
	},
}

func TestRenderInvariants(t *testing.T) {
	t.Parallel()
	flags := shoalFlags(t)
	for name, values := range valueSets {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			r := decode(t, values)
			checkObjects(t, r)
			checkAgent(t, r, flags)
			checkTracker(t, r, flags)
			checkSecrets(t, r, values)
		})
	}
}

// checkObjects: every object is in the release's namespace, named once per
// kind, and labelled with the release.
func checkObjects(t *testing.T, r *rendered) {
	t.Helper()
	seen := map[string]bool{}
	check := func(kind string, m metav1.ObjectMeta) {
		if m.Namespace != DefaultRelease.Namespace {
			t.Errorf("%s %s: namespace %q, want %q", kind, m.Name, m.Namespace, DefaultRelease.Namespace)
		}
		if seen[kind+"/"+m.Name] {
			t.Errorf("%s %s rendered twice", kind, m.Name)
		}
		seen[kind+"/"+m.Name] = true
		if m.Labels["app.kubernetes.io/instance"] != DefaultRelease.Name {
			t.Errorf("%s %s: no instance label", kind, m.Name)
		}
	}
	for _, o := range r.daemonSets {
		check("DaemonSet", o.ObjectMeta)
	}
	for _, o := range r.deployments {
		check("Deployment", o.ObjectMeta)
	}
	for _, o := range r.statefulSets {
		check("StatefulSet", o.ObjectMeta)
	}
	for _, o := range r.services {
		check("Service", o.ObjectMeta)
	}
	for _, o := range r.pdbs {
		check("PodDisruptionBudget", o.ObjectMeta)
	}
	for _, o := range r.secrets {
		check("Secret", o.ObjectMeta)
	}
	for _, o := range r.pvcs {
		check("PersistentVolumeClaim", o.ObjectMeta)
	}
	for _, o := range r.policies {
		check("NetworkPolicy", o.ObjectMeta)
	}
	for _, o := range r.monitors {
		check("ServiceMonitor", o.ObjectMeta)
	}
}

func checkAgent(t *testing.T, r *rendered, flags map[string]map[string]bool) {
	t.Helper()
	if len(r.daemonSets) != 1 {
		t.Fatalf("%d DaemonSets, want the agent's", len(r.daemonSets))
	}
	ds := r.daemonSets[0]
	spec := ds.Spec.Template.Spec
	if !subset(ds.Spec.Selector.MatchLabels, ds.Spec.Template.Labels) {
		t.Errorf("DaemonSet selector %v does not select its pods %v", ds.Spec.Selector.MatchLabels, ds.Spec.Template.Labels)
	}
	if !spec.HostNetwork || spec.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
		t.Errorf("agent: hostNetwork %v, dnsPolicy %q; want the node's network and cluster DNS", spec.HostNetwork, spec.DNSPolicy)
	}
	if spec.PriorityClassName != "system-node-critical" {
		t.Errorf("agent priorityClassName %q", spec.PriorityClassName)
	}
	if !slices.ContainsFunc(spec.Tolerations, func(tol corev1.Toleration) bool {
		return tol.Operator == corev1.TolerationOpExists && tol.Key == "" && tol.Effect == ""
	}) {
		t.Errorf("agent tolerations %+v do not tolerate every taint", spec.Tolerations)
	}
	agent := container(t, spec.Containers, "agent")
	args := argMap(t, agent.Args, "agent", flags["agent"])
	listen := args["listen"]
	if !strings.HasPrefix(listen, "127.0.0.1:") {
		t.Errorf("agent --listen %q, want the node's loopback", listen)
	}
	port, _ := strconv.Atoi(strings.TrimPrefix(listen, "127.0.0.1:"))

	// Resources, and GOMEMLIMIT from the memory limit.
	limit, ok := agent.Resources.Limits[corev1.ResourceMemory]
	if !ok || agent.Resources.Requests.Cpu().IsZero() || agent.Resources.Requests.Memory().IsZero() {
		t.Errorf("agent resources %+v: want requests and a memory limit", agent.Resources)
	}
	checkGoMemLimit(t, "agent", agent, limit)

	// Probes on the agent's address.
	for _, p := range []struct {
		probe *corev1.Probe
		path  string
	}{{agent.LivenessProbe, "/healthz"}, {agent.ReadinessProbe, "/readyz"}} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("agent has no %s probe", p.path)
			continue
		}
		g := p.probe.HTTPGet
		if g.Path != p.path || g.Host != "127.0.0.1" || g.Port.IntValue() != port {
			t.Errorf("agent %s probe %+v, want 127.0.0.1:%d%s", p.path, g, port, p.path)
		}
	}

	// The p2p port on the node, matching --p2p-listen.
	p2p := containerPort(agent, "p2p")
	if p2p == nil || p2p.HostPort != p2p.ContainerPort || !strings.HasSuffix(args["p2p-listen"], fmt.Sprintf("/tcp/%d", p2p.ContainerPort)) {
		t.Errorf("agent p2p port %+v, --p2p-listen %q", p2p, args["p2p-listen"])
	}

	// The store on the node.
	vol := volumeAt(t, spec, agent, args["data-dir"])
	if vol.HostPath == nil || vol.HostPath.Path == "" {
		t.Errorf("agent store volume %+v, want a hostPath", vol)
	}
	if c, err := strconv.ParseInt(args["store-capacity"], 10, 64); err != nil || c <= 0 {
		t.Errorf("agent --store-capacity %q, want bytes", args["store-capacity"])
	}

	// The tracker the agents use is the tracker's Service.
	checkTrackerURL(t, r, args["tracker"])
	checkSecretFiles(t, spec, agent, args, "tracker-token-file", "p2p-psk-file", "docker-config", "tracker-ca")

	// containerd: configured by an init container into the node's certs.d,
	// never restarted, undone when the agent stops.
	configure := containerOrNil(spec.InitContainers, "configure-containerd")
	if configure == nil {
		if agent.Lifecycle != nil {
			t.Errorf("agent lifecycle %+v without the containerd configuration", agent.Lifecycle)
		}
		return
	}
	want := registries(args)
	cargs := checkConfigure(t, spec, *configure, configure.Args, want, flags)
	if cargs["undo"] != "" {
		t.Error("the init container undoes the configuration")
	}
	if agent.Lifecycle != nil {
		start, stop := agent.Lifecycle.PostStart, agent.Lifecycle.PreStop
		if start == nil || start.Exec == nil || stop == nil || stop.Exec == nil {
			t.Fatalf("agent lifecycle %+v: want postStart and preStop commands", agent.Lifecycle)
		}
		if a := checkConfigure(t, spec, agent, shoalArgs(t, start.Exec.Command), want, flags); a["undo"] != "" {
			t.Error("postStart undoes the configuration")
		}
		if a := checkConfigure(t, spec, agent, shoalArgs(t, stop.Exec.Command), want, flags); a["undo"] != "true" {
			t.Error("preStop does not undo the configuration")
		}
	}
}

// checkConfigure checks one `shoal configure containerd` command line and
// returns its flags.
func checkConfigure(t *testing.T, spec corev1.PodSpec, c corev1.Container, argv []string, want []string, flags map[string]map[string]bool) map[string]string {
	t.Helper()
	if len(argv) < 2 || argv[0] != "configure" || argv[1] != "containerd" {
		t.Fatalf("%s: %q, want configure containerd", c.Name, argv)
	}
	a := argMap(t, argv, "configure containerd", flags["configure containerd"])
	if a["root"] != "/host" {
		t.Errorf("%s: --root %q, want /host", c.Name, a["root"])
	}
	for _, arg := range argv {
		if strings.Contains(arg, "restart") || strings.Contains(arg, "edit-config") {
			t.Errorf("%s: %q: containerd's config and process are not to be touched", c.Name, arg)
		}
	}
	if got := registries(a); !slices.Equal(got, want) {
		t.Errorf("%s: registries %v, the agent's %v", c.Name, got, want)
	}
	vol := volumeAt(t, spec, c, "/host/etc/containerd")
	if vol.HostPath == nil || vol.HostPath.Path == "" {
		t.Errorf("%s: /host/etc/containerd is %+v, want the node's directory", c.Name, vol)
	}
	return a
}

func checkTracker(t *testing.T, r *rendered, flags map[string]map[string]bool) {
	t.Helper()
	name, selector, pod, claims := trackerWorkload(t, r)
	if !subset(selector, pod.Labels) {
		t.Errorf("tracker selector %v does not select its pods %v", selector, pod.Labels)
	}
	tr := container(t, pod.Spec.Containers, "tracker")
	args := argMap(t, tr.Args, "tracker", flags["tracker"])
	checkGoMemLimit(t, "tracker", tr, tr.Resources.Limits[corev1.ResourceMemory])
	checkSecretFiles(t, pod.Spec, tr, args, "token-file", "seed-token-file", "p2p-psk-file", "docker-config", "tls-cert", "tls-key", "replicas-ca")
	if len(registries(args)) == 0 {
		t.Error("tracker: no --registry: the seeder fetches from none")
	}
	switch {
	case len(claims) > 0:
		checkClaimedStore(t, pod.Spec, tr, args["data-dir"], claims, r.pvcs)
	case len(r.pvcs) == 1:
		store := volumeAt(t, pod.Spec, tr, args["data-dir"])
		if store.PersistentVolumeClaim == nil || store.PersistentVolumeClaim.ClaimName != r.pvcs[0].Name {
			t.Errorf("tracker store %+v, want the PVC %s", store, r.pvcs[0].Name)
		}
	case len(r.pvcs) == 0:
		if store := volumeAt(t, pod.Spec, tr, args["data-dir"]); store.EmptyDir == nil {
			t.Errorf("tracker store %+v, want an emptyDir", store)
		}
	default:
		t.Errorf("%d PVCs", len(r.pvcs))
	}
	for _, probe := range []*corev1.Probe{tr.LivenessProbe, tr.ReadinessProbe} {
		if probe == nil || probe.HTTPGet == nil || probe.HTTPGet.Path != "/healthz" {
			t.Errorf("tracker probe %+v, want /healthz", probe)
		}
	}
	// Its Service and PDB select it.
	svc := serviceNamed(r, name)
	if svc == nil || !subset(svc.Spec.Selector, pod.Labels) {
		t.Fatalf("tracker Service %+v does not select the tracker's pods", svc)
	}
	if len(r.pdbs) != 1 || !subset(r.pdbs[0].Spec.Selector.MatchLabels, pod.Labels) {
		t.Errorf("PDBs %+v: want one selecting the tracker", r.pdbs)
	}
	if len(r.pdbs) == 1 && r.pdbs[0].Spec.MinAvailable == nil && r.pdbs[0].Spec.MaxUnavailable == nil {
		t.Error("the PDB sets neither minAvailable nor maxUnavailable")
	}
	for _, np := range r.policies {
		if !subset(np.Spec.PodSelector.MatchLabels, pod.Labels) {
			t.Errorf("NetworkPolicy %s does not select the tracker", np.Name)
		}
	}
	checkMonitors(t, r)
}

// checkTrackerURL: the agents' --tracker is the tracker Service's name and
// port, or with replicas dns+ on the headless Service or each pod's name
// under it.
func checkTrackerURL(t *testing.T, r *rendered, raw string) {
	t.Helper()
	want := make([]string, 0, len(r.services))
	for _, s := range r.services {
		for _, p := range s.Spec.Ports {
			want = append(want, fmt.Sprintf("%s.%s.svc:%d", s.Name, s.Namespace, p.Port))
		}
	}
	for _, one := range strings.Split(raw, ",") {
		u, err := url.Parse(strings.TrimPrefix(one, "dns+"))
		if err != nil {
			t.Fatalf("agent --tracker %q: %v", raw, err)
		}
		host := u.Host
		if ss := r.statefulSets; len(ss) == 1 && !strings.HasPrefix(one, "dns+") {
			// A pod's name: NAME-i.SERVICE.NAMESPACE.svc:PORT.
			pod, rest, _ := strings.Cut(host, ".")
			if !strings.HasPrefix(pod, ss[0].Name+"-") {
				t.Errorf("agent --tracker %q: %s is not a pod of %s", raw, pod, ss[0].Name)
			}
			host = rest
		}
		if !slices.Contains(want, host) {
			t.Errorf("agent --tracker %q: %s is none of the Services %v", raw, host, want)
		}
	}
}

// checkSecretFiles: each file flag set names a file in a mounted Secret
// volume, and the Secret is rendered or is the one the README has made.
func checkSecretFiles(t *testing.T, spec corev1.PodSpec, c corev1.Container, args map[string]string, names ...string) {
	t.Helper()
	for _, name := range names {
		path, ok := args[name]
		if !ok {
			continue
		}
		vol := volumeAt(t, spec, c, filepath.Dir(path))
		if vol.Secret == nil || vol.Secret.SecretName == "" {
			t.Errorf("%s --%s=%s: not in a Secret volume (%+v)", c.Name, name, path, vol)
			continue
		}
		if items := vol.Secret.Items; len(items) > 0 && !slices.ContainsFunc(items, func(k corev1.KeyToPath) bool { return k.Path == filepath.Base(path) }) {
			t.Errorf("%s --%s=%s: the Secret volume projects only %+v", c.Name, name, path, items)
		}
		// A container not running as root reads the files through the
		// pod's fsGroup, which owns them: the group must be able to read.
		if !runsAsRoot(spec, c) {
			mode := int32(0o644)
			if vol.Secret.DefaultMode != nil {
				mode = *vol.Secret.DefaultMode
			}
			if spec.SecurityContext == nil || spec.SecurityContext.FSGroup == nil || mode&0o040 == 0 {
				t.Errorf("%s --%s=%s: mode %o without group read or no fsGroup: unreadable by a non-root user", c.Name, name, path, mode)
			}
		}
	}
}

func checkSecrets(t *testing.T, r *rendered, values map[string]any) {
	t.Helper()
	sec, _ := values["secrets"].(map[string]any)
	if sec["create"] != true {
		for _, s := range r.secrets {
			if s.Type == corev1.SecretTypeOpaque {
				t.Errorf("Secret %s rendered with secrets.create off", s.Name)
			}
		}
		return
	}
	var s *corev1.Secret
	for _, x := range r.secrets {
		if x.Type == corev1.SecretTypeOpaque {
			s = x
		}
	}
	if s == nil {
		t.Fatal("no Secret with secrets.create")
	}
	if n, _ := sec["name"].(string); n != "" && s.Name != n {
		t.Errorf("Secret %s, want %s", s.Name, n)
	}
	for key, given := range map[string]string{"token": str(sec["clusterToken"]), "seed-token": str(sec["seedToken"]), "psk": str(sec["psk"])} {
		got := s.Data[key]
		switch {
		case given != "" && string(got) != given:
			t.Errorf("Secret %s: %s %q, want the value given", s.Name, key, got)
		case given == "" && key == "psk" && len(got) != 32:
			t.Errorf("Secret %s: generated psk of %d bytes, want 32", s.Name, len(got))
		case given == "" && key != "psk" && !regexp.MustCompile(`^[A-Za-z0-9]{48}$`).Match(got):
			t.Errorf("Secret %s: generated %s %q, want 48 letters and digits", s.Name, key, got)
		}
	}
	// The pods mount that Secret.
	ds := r.daemonSets[0].Spec.Template.Spec
	if !slices.ContainsFunc(ds.Volumes, func(v corev1.Volume) bool { return v.Secret != nil && v.Secret.SecretName == s.Name }) {
		t.Errorf("the agent does not mount Secret %s", s.Name)
	}
}

func checkGoMemLimit(t *testing.T, name string, c corev1.Container, limit resource.Quantity) {
	t.Helper()
	var env string
	for _, e := range c.Env {
		if e.Name == "GOMEMLIMIT" {
			env = e.Value
		}
	}
	n, err := strconv.ParseInt(env, 10, 64)
	if err != nil || limit.IsZero() {
		t.Errorf("%s: GOMEMLIMIT %q with memory limit %s, want bytes below the limit", name, env, limit.String())
		return
	}
	if want := limit.Value() * 9 / 10; n < want-1 || n > want+1 {
		t.Errorf("%s: GOMEMLIMIT %d, want 90%% of the limit %s (%d)", name, n, limit.String(), want)
	}
}

// TestManifestIsDefaultRender: shoal.yaml is what the chart renders with its
// defaults; `make kubernetes-manifests` writes it again.
func TestManifestIsDefaultRender(t *testing.T) {
	t.Parallel()
	ms, err := Render(chartDir, DefaultRelease, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("shoal.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != Join(ms) {
		t.Error("shoal.yaml is not the default render of charts/shoal: run `make kubernetes-manifests`")
	}
	// The default render is the same every time: no generated secret in it.
	again, _ := Render(chartDir, DefaultRelease, nil)
	if Join(again) != Join(ms) {
		t.Error("two default renders differ")
	}
}

// TestBadSize: a size the chart cannot read fails the render with a message.
func TestBadSize(t *testing.T) {
	t.Parallel()
	_, err := Render(chartDir, DefaultRelease, map[string]any{"agent": map[string]any{"store": map[string]any{"capacity": "20GB"}}})
	if err == nil || !strings.Contains(err.Error(), `size "20GB"`) {
		t.Errorf("render with capacity 20GB: %v, want the size named", err)
	}
}

// --- helpers

// runsAsRoot says whether c runs as uid 0 (the image's own user is 65532).
func runsAsRoot(spec corev1.PodSpec, c corev1.Container) bool {
	if c.SecurityContext != nil && c.SecurityContext.RunAsUser != nil {
		return *c.SecurityContext.RunAsUser == 0
	}
	if spec.SecurityContext != nil && spec.SecurityContext.RunAsUser != nil {
		return *spec.SecurityContext.RunAsUser == 0
	}
	return false
}

func container(t *testing.T, cs []corev1.Container, name string) corev1.Container {
	t.Helper()
	c := containerOrNil(cs, name)
	if c == nil {
		t.Fatalf("no container %s", name)
	}
	return *c
}

func containerOrNil(cs []corev1.Container, name string) *corev1.Container {
	for i := range cs {
		if cs[i].Name == name {
			return &cs[i]
		}
	}
	return nil
}

func containerPort(c corev1.Container, name string) *corev1.ContainerPort {
	for i := range c.Ports {
		if c.Ports[i].Name == name {
			return &c.Ports[i]
		}
	}
	return nil
}

// volumeAt returns the pod volume mounted at path in c.
func volumeAt(t *testing.T, spec corev1.PodSpec, c corev1.Container, path string) corev1.Volume {
	t.Helper()
	for _, m := range c.VolumeMounts {
		if m.MountPath == path {
			for _, v := range spec.Volumes {
				if v.Name == m.Name {
					return v
				}
			}
			t.Fatalf("%s mounts %s from a volume %s the pod lacks", c.Name, path, m.Name)
		}
	}
	t.Fatalf("%s mounts nothing at %s", c.Name, path)
	return corev1.Volume{}
}

func serviceNamed(r *rendered, name string) *corev1.Service {
	for _, s := range r.services {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// shoalArgs strips the binary from an exec command.
func shoalArgs(t *testing.T, argv []string) []string {
	t.Helper()
	if len(argv) == 0 || filepath.Base(argv[0]) != "shoal" {
		t.Fatalf("command %q does not run shoal", argv)
	}
	return argv[1:]
}

// argMap checks that argv is cmd (words) followed by --name=value flags
// that the shoal binary's cmd accepts, and returns them (a bare flag is
// "true"; repeated ones are joined by commas).
func argMap(t *testing.T, argv []string, cmd string, known map[string]bool) map[string]string {
	t.Helper()
	words := strings.Fields(cmd)
	if len(argv) < len(words) || !slices.Equal(argv[:len(words)], words) {
		t.Fatalf("args %q do not start with %q", argv, cmd)
	}
	out := map[string]string{}
	for _, a := range argv[len(words):] {
		name, value, ok := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !strings.HasPrefix(a, "--") {
			t.Errorf("%s: argument %q is not a --flag", cmd, a)
			continue
		}
		if !ok {
			value = "true"
		}
		if known != nil && !known[name] {
			t.Errorf("%s: --%s is not a flag of `shoal %s` (see its --help)", cmd, name, cmd)
		}
		if prev, dup := out[name]; dup {
			value = prev + "," + value
		}
		out[name] = value
	}
	return out
}

// registries lists the --registry values of a command line.
func registries(args map[string]string) []string {
	if args["registry"] == "" {
		return nil
	}
	return strings.Split(args["registry"], ",")
}

func subset(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

var (
	flagsOnce sync.Once
	flagsErr  error
	flagsOf   map[string]map[string]bool
)

// shoalFlags builds the shoal binary from the main module and reads the
// flags of `shoal agent`, `shoal tracker` and `shoal configure containerd`
// from their --help. A command the binary lacks fails the test: the chart
// would run a command line that cannot start.
func shoalFlags(t *testing.T) map[string]map[string]bool {
	t.Helper()
	flagsOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		dir, err := os.MkdirTemp("", "shoal-flags")
		if err != nil {
			flagsErr = err
			return
		}
		defer os.RemoveAll(dir)
		bin := filepath.Join(dir, "shoal")
		build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/shoal")
		build.Dir = "../.."
		if out, err := build.CombinedOutput(); err != nil {
			flagsErr = fmt.Errorf("go build shoal: %v\n%s", err, out)
			return
		}
		flagsOf = map[string]map[string]bool{}
		for _, cmd := range []string{"agent", "tracker", "configure containerd"} {
			out, err := exec.CommandContext(ctx, bin, append(strings.Fields(cmd), "--help")...).CombinedOutput()
			if err != nil || !strings.Contains(string(out), "Flags:") || !strings.Contains(string(out), "shoal "+cmd) {
				flagsOf[cmd] = nil
				continue
			}
			flagsOf[cmd] = parseFlags(string(out))
		}
	})
	if flagsErr != nil {
		t.Fatal(flagsErr)
	}
	for cmd, f := range flagsOf {
		if f == nil {
			t.Fatalf("the shoal binary has no `%s` command, which the chart runs", cmd)
		}
	}
	return flagsOf
}

var flagLine = regexp.MustCompile(`(?m)^\s+(?:-\w, )?--([a-z0-9-]+)`)

func parseFlags(help string) map[string]bool {
	out := map[string]bool{}
	for _, m := range flagLine.FindAllStringSubmatch(help, -1) {
		out[m[1]] = true
	}
	return out
}

func TestParseFlags(t *testing.T) {
	t.Parallel()
	help := "Usage:\n  shoal agent [flags]\n\nFlags:\n      --data-dir string   dir\n  -h, --help              help\n      --p2p-listen strings   addrs (default [/ip4/0.0.0.0/tcp/4001])\n"
	got := parseFlags(help)
	for _, f := range []string{"data-dir", "help", "p2p-listen"} {
		if !got[f] {
			t.Errorf("flag %s not found in %v", f, got)
		}
	}
	if len(got) != 3 {
		t.Errorf("flags %v, want 3", got)
	}
}
