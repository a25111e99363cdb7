using Microsoft.Extensions.Logging;
using QanaEdge.Akida;

namespace QanaEdge.Daemon.Classification;

/// <summary>
/// What happens when the Akida card fails while classifying (enqueue or fetch answers with an error: the card stopped
/// answering, lost its program after a reset, or a fetch timed out): the running model moves to the managed integer
/// engine, between images, and the worker classifies the image in hand again there. The managed engine's logits are
/// the card's bit for bit, so results do not change, only the power drawn. Before, every capture after such a fault
/// was quarantined as a classifier error. The card is not tried again until the daemon restarts or an update programs
/// it; the status names the managed engine and the card's message.
/// </summary>
public sealed class CardFailover(ActiveModel model, EngineChoice choice, ILogger log)
{
    /// <summary>True for a failure of the card itself, as opposed to the image or the host side.</summary>
    public static bool IsCardFault(Exception e) => e is AkidaException;

    /// <summary>
    /// Moves the model off the card if the classifier of <paramref name="generation"/> that saw <paramref name="fault"/>
    /// is still the current one; when another worker or an update got there first, nothing changes. The caller then
    /// takes a classifier of the current generation.
    /// </summary>
    /// <exception cref="ModelUnavailableException">The model cannot run on the managed engine either.</exception>
    public void Leave(int generation, Exception fault)
    {
        model.Swap(old =>
        {
            if (model.Generation != generation || !old.HoldsDevice) return (old, model.Source, false);
            log.LogError("The Akida card failed while classifying ({Error}): model {Model} {Version} moves to the managed engine",
                fault.Message, old.ModelId, old.ModelVersion);
            // Built before the old provider lets the card go (Swap disposes it): if this throws, nothing has changed.
            IClassifierProvider managed = ClassifierFactory.AfterCardFault(old.Package, old.PackagePath, choice, fault.Message);
            return (managed, $"{model.Source}; the Akida card failed ({fault.Message})", true);
        });
    }
}
