// Package ovf reads and writes DMTF OVF packages: descriptors (OVF 0.9,
// 1.x including oVirt's dialect, and 2.x), manifests, OVA archives and
// package directories.
//
// It is a pure codec. It performs no I/O beyond the io.Reader, io.ReaderAt
// and fs.FS values it is handed and knows nothing of the hypervisor, the
// store or the API that use it.
//
// Reading a package goes through three layers:
//
//   - Parse turns descriptor bytes into an Envelope: a neutral model of
//     References, DiskSection, NetworkSection, DeploymentOptionSection and
//     the VirtualSystem or VirtualSystemCollection, with every hardware
//     section resolved into a Machine (CPUs, memory, disks on their
//     controllers, NICs). Parsing matches namespace URIs, never prefixes,
//     rejects DOCTYPEs, enforces limits on size, depth and element count,
//     applies the chosen deployment configuration and refuses required
//     content it does not understand.
//   - OpenOVA and OpenDir find the descriptor, manifest and certificate of
//     a package, check that every referenced file is inside the package
//     and present with its declared size, and give access to the stored
//     bytes of each file through readers that verify the manifest digest.
//     An OVA is indexed by member offsets and never extracted.
//   - Summary reduces an Envelope to the JSON document printed by
//     "cimi ovf inspect".
//
// Writing goes the other way: Encode builds an OVF 1.x descriptor from a
// Spec and WriteOVA writes a ustar archive holding the descriptor, its
// SHA256 manifest and the disk files.
package ovf
