using QanaEdge.Model;
using QanaEdge.Model.Packaging;

namespace QanaEdge.Daemon.Updates;

/// <summary>
/// The keys update packages are verified against: every <c>*.pub</c> of the trust folder (Qana:TrustDir), and this
/// device's own learner key, so that the readouts it learns verify like any other update (a learner key may sign
/// readout updates only: <see cref="PackageSignature.MaySign"/>).
/// </summary>
public sealed class DeviceTrust(string trustDir, TrustedKey? learner)
{
    public string TrustDir => trustDir;
    public TrustedKey? Learner => learner;

    /// <summary>
    /// The trust store, read afresh (keys added to the folder count from the next package on). A missing folder
    /// leaves only the learner key, and <paramref name="problem"/> says so for the refusal of anything else.
    /// </summary>
    /// <exception cref="KeyFileException">The folder is missing and there is no learner key, or a key file is bad.</exception>
    public TrustStore Load(out string? problem)
    {
        problem = null;
        if (ExpectedPath.FolderProblem(trustDir) is { } missing)
        {
            problem = $"trust directory '{trustDir}' {missing}";
            if (learner is null) throw new KeyFileException(problem);
            return new TrustStore([learner]);
        }
        IReadOnlyCollection<TrustedKey> keys = TrustStore.Load(trustDir).Keys;
        return new TrustStore(learner is null ? keys : keys.Append(learner));
    }
}
